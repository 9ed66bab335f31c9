"""wechat bindings

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 23:25:16.306945
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('binding_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('push_to_wechat', sa.Boolean(), nullable=False),
    sa.Column('expires_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', store.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('used_by', sa.String(length=64), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['members.id'], name=op.f('fk_binding_codes_created_by_members')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_binding_codes_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_binding_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_binding_codes_code'))
    )
    with op.batch_alter_table('binding_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_binding_codes_member_id'), ['member_id'], unique=False)

    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wechat_openid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('push_channel', sa.String(length=16), server_default='wecom', nullable=False))
        batch_op.create_unique_constraint(batch_op.f('uq_members_wechat_openid'), ['wechat_openid'])



def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_members_wechat_openid'), type_='unique')
        batch_op.drop_column('push_channel')
        batch_op.drop_column('wechat_openid')

    with op.batch_alter_table('binding_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_binding_codes_member_id'))

    op.drop_table('binding_codes')
