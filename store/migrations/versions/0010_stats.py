"""stats

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 20:21:57.343464
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('click_daily',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=False),
    sa.Column('clicks', sa.Integer(), nullable=False),
    sa.Column('unique_clicks', sa.Integer(), nullable=False),
    sa.Column('bot_clicks', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['link_id'], ['tracked_links.id'], name=op.f('fk_click_daily_link_id_tracked_links')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_click_daily')),
    sa.UniqueConstraint('day', 'link_id', name=op.f('uq_click_daily_day'))
    )
    with op.batch_alter_table('click_daily', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_click_daily_day'), ['day'], unique=False)
        batch_op.create_index(batch_op.f('ix_click_daily_link_id'), ['link_id'], unique=False)

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('won_at', store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_leads_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_won_at'), ['won_at'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_purpose_sent', ['purpose', 'sent_at'], unique=False)

    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shares_created_at'), ['created_at'], unique=False)

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost', sa.Numeric(precision=14, scale=2), nullable=True))

    # Leads won before this revision: their win time is in the audit trail. (Daily click counts
    # are rebuilt by `partnerbot migrate`, which knows the deployment's time zone.)
    op.execute("UPDATE leads SET won_at = (SELECT max(e.at) FROM lead_events e WHERE e.lead_id = leads.id "
               "AND e.kind = 'won') WHERE status = 'won'")


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('cost')

    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shares_created_at'))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_purpose_sent')

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_won_at'))
        batch_op.drop_index(batch_op.f('ix_leads_created_at'))
        batch_op.drop_column('won_at')

    with op.batch_alter_table('click_daily', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_click_daily_link_id'))
        batch_op.drop_index(batch_op.f('ix_click_daily_day'))

    op.drop_table('click_daily')
