"""outbox sent_at index

Today's WeCom sends are counted for the broadcast preview's quota line (accounts × 200 a day): an
index on sent_at keeps that count off a scan of the whole outbox.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 06:20:00
"""
from alembic import op


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_sent_at', ['sent_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_sent_at')
