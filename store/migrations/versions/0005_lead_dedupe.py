"""one lead per form key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedupe_key', sa.String(length=96), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_leads_dedupe_key'), ['dedupe_key'])



def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_leads_dedupe_key'), type_='unique')
        batch_op.drop_column('dedupe_key')

