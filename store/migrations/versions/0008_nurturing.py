"""nurturing

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_contact_at', store.models.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_column('next_contact_at')

