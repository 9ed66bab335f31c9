"""retention

An index on the inbox by sender: retention keeps each sender's newest message (whether a member ever
wrote in WeCom is asked of the inbox) and looks for it per candidate row.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 06:30:00
"""
from alembic import op


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_inbox_sender', 'inbox', ['channel', 'user_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_inbox_sender', table_name='inbox')
