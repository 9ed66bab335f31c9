"""leads, lead events and touches

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('leads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('company', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('industry', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('partner_id', sa.Integer(), nullable=True),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('link_id', sa.Integer(), nullable=True),
    sa.Column('visitor_id', sa.String(length=40), nullable=False),
    sa.Column('consent_at', store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('protected_until', store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['link_id'], ['tracked_links.id'], name=op.f('fk_leads_link_id_tracked_links')),
    sa.ForeignKeyConstraint(['owner_id'], ['members.id'], name=op.f('fk_leads_owner_id_members')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_leads_partner_id_partners')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_leads_task_id_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_leads'))
    )
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leads_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index('ix_leads_phone_task', ['phone', 'task_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_task_id'), ['task_id'], unique=False)

    op.create_table('lead_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_events_lead_id_leads')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_lead_events_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_events'))
    )
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_events_lead_id'), ['lead_id'], unique=False)

    op.create_table('lead_touches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=False),
    sa.Column('click_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['click_id'], ['clicks.id'], name=op.f('fk_lead_touches_click_id_clicks')),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_touches_lead_id_leads')),
    sa.ForeignKeyConstraint(['link_id'], ['tracked_links.id'], name=op.f('fk_lead_touches_link_id_tracked_links')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_touches'))
    )
    with op.batch_alter_table('lead_touches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_touches_lead_id'), ['lead_id'], unique=False)

    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.create_index('ix_clicks_visitor', ['visitor_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_index('ix_clicks_visitor')

    with op.batch_alter_table('lead_touches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_touches_lead_id'))

    op.drop_table('lead_touches')
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_events_lead_id'))

    op.drop_table('lead_events')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_task_id'))
        batch_op.drop_index(batch_op.f('ix_leads_status'))
        batch_op.drop_index('ix_leads_phone_task')
        batch_op.drop_index(batch_op.f('ix_leads_partner_id'))
        batch_op.drop_index(batch_op.f('ix_leads_owner_id'))

    op.drop_table('leads')
