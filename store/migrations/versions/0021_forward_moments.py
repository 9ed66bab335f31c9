"""forward moments

`forward N` is recorded before WeCom is asked (keyed by the chat message, `inbox_id`, so one chat
message makes at most one forward) and created in WeCom once after the commit (`status`, and what to
send); where allowed it also makes a Moments task, whose jobid, moment_id and published state are
kept. Existing forwards were created already (`status` created).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 04:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('content_forwards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inbox_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default='created', nullable=False))
        batch_op.add_column(sa.Column('text', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('title', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('description', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('url', sa.String(length=2000), server_default='', nullable=False))
        batch_op.add_column(sa.Column('moment', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('moment_jobid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('moment_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('moment_published', sa.Boolean(), nullable=True))
        batch_op.alter_column('msgid', existing_type=sa.String(length=64), nullable=True)
        batch_op.create_unique_constraint(batch_op.f('uq_content_forwards_inbox_id'), ['inbox_id'])
        batch_op.create_index(batch_op.f('ix_content_forwards_status'), ['status'], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM content_forwards WHERE msgid IS NULL")
    with op.batch_alter_table('content_forwards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_forwards_status'))
        batch_op.drop_constraint(batch_op.f('uq_content_forwards_inbox_id'), type_='unique')
        batch_op.alter_column('msgid', existing_type=sa.String(length=64), nullable=False)
        for column in ('moment_published', 'moment_id', 'moment_jobid', 'moment', 'url', 'description', 'title',
                       'text', 'status', 'inbox_id'):
            batch_op.drop_column(column)
