"""tiers

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 20:50:19.791342
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
    sa.UniqueConstraint('name', 'period', name=op.f('uq_job_runs_name'))
    )
    op.create_table('tier_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('old_tier', sa.String(length=16), nullable=False),
    sa.Column('new_tier', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_tier_changes_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_changes'))
    )
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tier_changes_partner_id'), ['partner_id'], unique=False)

    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('min_tier', sa.String(length=16), server_default='registered', nullable=False))
        batch_op.alter_column('partner_id',
               existing_type=sa.INTEGER(),
               nullable=True)

    with op.batch_alter_table('pool_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('min_tier', sa.String(length=16), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('pool_settings', schema=None) as batch_op:
        batch_op.drop_column('min_tier')

    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.alter_column('partner_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('min_tier')

    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tier_changes_partner_id'))

    op.drop_table('tier_changes')
    op.drop_table('job_runs')
