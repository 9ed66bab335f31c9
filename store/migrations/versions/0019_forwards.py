"""content forwards

A member's copy of a content item sent to their WeCom customers as a customer mass message
(`forward N`): WeCom's msgid, how many customers it could reach, and how many it reached once the
member confirmed it (read back by a periodic job).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 04:20:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('content_forwards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('content_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('msgid', sa.String(length=64), nullable=False),
    sa.Column('reachable', sa.Integer(), nullable=False),
    sa.Column('reached', sa.Integer(), nullable=True),
    sa.Column('created_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checked_at', store.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['content_id'], ['content_items.id'], name=op.f('fk_content_forwards_content_id_content_items')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_content_forwards_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_forwards')),
    sa.UniqueConstraint('msgid', name=op.f('uq_content_forwards_msgid'))
    )
    with op.batch_alter_table('content_forwards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_content_forwards_content_id'), ['content_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_content_forwards_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_content_forwards_member_id'), ['member_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('content_forwards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_forwards_member_id'))
        batch_op.drop_index(batch_op.f('ix_content_forwards_created_at'))
        batch_op.drop_index(batch_op.f('ix_content_forwards_content_id'))

    op.drop_table('content_forwards')
