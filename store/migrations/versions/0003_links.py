"""tracked links and clicks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tracked_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('created_at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_tracked_links_member_id_members')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_tracked_links_task_id_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tracked_links')),
    sa.UniqueConstraint('code', name=op.f('uq_tracked_links_code')),
    sa.UniqueConstraint('task_id', 'member_id', 'channel', name=op.f('uq_tracked_links_task_id'))
    )
    with op.batch_alter_table('tracked_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tracked_links_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tracked_links_task_id'), ['task_id'], unique=False)

    op.create_table('clicks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=False),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('visitor_id', sa.String(length=40), nullable=False),
    sa.Column('ip_hash', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=512), nullable=False),
    sa.Column('referrer', sa.String(length=1024), nullable=False),
    sa.Column('is_bot', sa.Boolean(), nullable=False),
    sa.Column('is_unique', sa.Boolean(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['link_id'], ['tracked_links.id'], name=op.f('fk_clicks_link_id_tracked_links')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clicks')),
    sa.UniqueConstraint('event_id', name=op.f('uq_clicks_event_id'))
    )
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clicks_at'), ['at'], unique=False)
        batch_op.create_index('ix_clicks_link_at', ['link_id', 'at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_index('ix_clicks_link_at')
        batch_op.drop_index(batch_op.f('ix_clicks_at'))

    op.drop_table('clicks')
    with op.batch_alter_table('tracked_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tracked_links_task_id'))
        batch_op.drop_index(batch_op.f('ix_tracked_links_member_id'))

    op.drop_table('tracked_links')
