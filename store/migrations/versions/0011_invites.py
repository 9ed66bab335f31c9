"""invites

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 20:41:57.776816
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('expires_at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['members.id'], name=op.f('fk_invites_created_by_members')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_invites_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invites')),
    sa.UniqueConstraint('code', name=op.f('uq_invites_code'))
    )
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invites_partner_id'), ['partner_id'], unique=False)

    op.create_table('invite_uses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invite_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invite_id'], ['invites.id'], name=op.f('fk_invite_uses_invite_id_invites')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_invite_uses_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invite_uses'))
    )
    with op.batch_alter_table('invite_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invite_uses_invite_id'), ['invite_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invite_uses_member_id'), ['member_id'], unique=False)

    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('industries', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('tier', sa.String(length=16), server_default='registered', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_column('tier')
        batch_op.drop_column('industries')

    with op.batch_alter_table('invite_uses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invite_uses_member_id'))
        batch_op.drop_index(batch_op.f('ix_invite_uses_invite_id'))

    op.drop_table('invite_uses')
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invites_partner_id'))

    op.drop_table('invites')
