"""lead pool fields

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.create_index('ix_lead_events_member_kind_at', ['member_id', 'kind', 'at'], unique=False)

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pool_partner_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('value', sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.add_column(sa.Column('won_amount', sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_follow_at', store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_leads_pool_partner_id'), ['pool_partner_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_leads_pool_partner_id_partners'), 'partners', ['pool_partner_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_leads_pool_partner_id_partners'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_leads_pool_partner_id'))
        batch_op.drop_column('last_follow_at')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('won_amount')
        batch_op.drop_column('value')
        batch_op.drop_column('pool_partner_id')

    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_events_member_kind_at')

