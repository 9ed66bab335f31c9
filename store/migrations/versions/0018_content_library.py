"""content library

Content items (five kinds; tags, audience written like broadcast targets, expiry, status), their
tags and their attachments to tasks. A member's copy of an item is a tracked link and a share like a
task's, so `tracked_links` and `shares` get a nullable `content_id` and their `task_id` becomes
nullable: a row names a task or a content item. Existing rows keep their task and every task figure
stays as it was.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 03:50:49
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('content_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('audience', sa.String(length=500), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at', store.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['members.id'], name=op.f('fk_content_items_created_by_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_items'))
    )
    with op.batch_alter_table('content_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_content_items_status'), ['status'], unique=False)

    op.create_table('content_attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('content_id', sa.Integer(), nullable=False),
    sa.Column('created_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['content_id'], ['content_items.id'], name=op.f('fk_content_attachments_content_id_content_items')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_content_attachments_task_id_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_attachments')),
    sa.UniqueConstraint('task_id', 'content_id', name=op.f('uq_content_attachments_task_id'))
    )
    with op.batch_alter_table('content_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_content_attachments_task_id'), ['task_id'], unique=False)

    op.create_table('content_tags',
    sa.Column('content_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['content_id'], ['content_items.id'], name=op.f('fk_content_tags_content_id_content_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('content_id', 'tag', name=op.f('pk_content_tags'))
    )
    with op.batch_alter_table('content_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_content_tags_tag'), ['tag'], unique=False)

    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_id', sa.Integer(), nullable=True))
        batch_op.alter_column('task_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_shares_content_id'), ['content_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_shares_content_id_content_items'), 'content_items', ['content_id'], ['id'])

    with op.batch_alter_table('tracked_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_id', sa.Integer(), nullable=True))
        batch_op.alter_column('task_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_tracked_links_content_id'), ['content_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_tracked_links_content_id'), ['content_id', 'member_id', 'channel'])
        batch_op.create_foreign_key(batch_op.f('fk_tracked_links_content_id_content_items'), 'content_items', ['content_id'], ['id'])



def downgrade() -> None:
    # Content copies have no task: they go, with their clicks and what points at them.
    copies = "(SELECT id FROM tracked_links WHERE task_id IS NULL)"
    for statement in (f"DELETE FROM lead_touches WHERE link_id IN {copies}",
                      f"UPDATE leads SET link_id = NULL WHERE link_id IN {copies}",
                      f"UPDATE flags SET link_id = NULL WHERE link_id IN {copies}",
                      f"DELETE FROM click_daily WHERE link_id IN {copies}",
                      f"DELETE FROM clicks WHERE link_id IN {copies}",
                      "DELETE FROM shares WHERE task_id IS NULL",
                      "DELETE FROM tracked_links WHERE task_id IS NULL"):
        op.execute(sa.text(statement))
    with op.batch_alter_table('tracked_links', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tracked_links_content_id_content_items'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_tracked_links_content_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_tracked_links_content_id'))
        batch_op.alter_column('task_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('content_id')

    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_shares_content_id_content_items'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_shares_content_id'))
        batch_op.alter_column('task_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('content_id')

    with op.batch_alter_table('content_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_tags_tag'))

    op.drop_table('content_tags')
    with op.batch_alter_table('content_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_attachments_task_id'))

    op.drop_table('content_attachments')
    with op.batch_alter_table('content_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_items_status'))

    op.drop_table('content_items')
