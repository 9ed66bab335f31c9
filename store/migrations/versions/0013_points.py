"""points

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 20:53:45.114408
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('points_ledger',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=80), nullable=False),
    sa.Column('basis', sa.String(length=72), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=True),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('commission', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_points_ledger_member_id_members')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_points_ledger_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_ledger')),
    sa.UniqueConstraint('ref', name=op.f('uq_points_ledger_ref'))
    )
    with op.batch_alter_table('points_ledger', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_points_ledger_basis'), ['basis'], unique=False)
        batch_op.create_index('ix_points_member_at', ['member_id', 'at'], unique=False)
        batch_op.create_index('ix_points_partner_at', ['partner_id', 'at'], unique=False)

    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('commission_rate', sa.Numeric(precision=6, scale=4), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_column('commission_rate')

    with op.batch_alter_table('points_ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_points_partner_at')
        batch_op.drop_index('ix_points_member_at')
        batch_op.drop_index(batch_op.f('ix_points_ledger_basis'))

    op.drop_table('points_ledger')
