"""pool settings

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 20:14:07.578958
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pool_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=True),
    sa.Column('daily_claim_limit', sa.Integer(), nullable=True),
    sa.Column('max_held', sa.Integer(), nullable=True),
    sa.Column('idle_days', sa.Integer(), nullable=True),
    sa.Column('cooldown_days', sa.Integer(), nullable=True),
    sa.Column('protect_days', sa.Integer(), nullable=True),
    sa.Column('return_reason_required', sa.Boolean(), nullable=True),
    sa.Column('embargo_hours', sa.Integer(), nullable=True),
    sa.Column('updated_at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_pool_settings_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_settings')),
    sa.UniqueConstraint('scope', name=op.f('uq_pool_settings_scope'))
    )


def downgrade() -> None:
    op.drop_table('pool_settings')
