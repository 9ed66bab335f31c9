"""outbox may_have_been_delivered

Whether an earlier attempt at a row may have reached the member (a send whose outcome is unknown, a
row taken over from a sender that may have died mid-send): only such a retry asks WeCom to drop a
duplicate. Counted from attempts, a retry after a definite error (WeCom answered with an errcode,
nothing delivered) was dropped as a copy of an identical message the member got earlier.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 16:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('may_have_been_delivered', sa.Boolean(), server_default='0', nullable=False))
    # Rows still to send keep the old rule (a second claim may follow a delivery): a retry that may
    # have been delivered must not go out without the check.
    op.execute("UPDATE outbox SET may_have_been_delivered = true "
               "WHERE attempts > 1 AND status IN ('pending', 'sending', 'waiting', 'deferred')")


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('may_have_been_delivered')
