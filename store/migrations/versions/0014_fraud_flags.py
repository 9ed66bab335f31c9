"""fraud flags

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 21:01:18.675010
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=True),
    sa.Column('partner_id', sa.Integer(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['link_id'], ['tracked_links.id'], name=op.f('fk_flags_link_id_tracked_links')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_flags_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flags'))
    )
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.create_index('ix_flags_status', ['status', 'id'], unique=False)

    op.create_table('flag_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('flag_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('at', store.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['flag_id'], ['flags.id'], name=op.f('fk_flag_decisions_flag_id_flags')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_flag_decisions_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flag_decisions'))
    )
    with op.batch_alter_table('flag_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flag_decisions_flag_id'), ['flag_id'], unique=False)

    with op.batch_alter_table('click_daily', schema=None) as batch_op:
        batch_op.add_column(sa.Column('held_clicks', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flag_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('held', sa.Boolean(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_clicks_flag_id'), ['flag_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_clicks_flag_id_flags'), 'flags', ['flag_id'], ['id'])

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flag_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('held', sa.Boolean(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_leads_flag_id'), ['flag_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_leads_flag_id_flags'), 'flags', ['flag_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_leads_flag_id_flags'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_leads_flag_id'))
        batch_op.drop_column('held')
        batch_op.drop_column('flag_id')

    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_clicks_flag_id_flags'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_clicks_flag_id'))
        batch_op.drop_column('held')
        batch_op.drop_column('flag_id')

    with op.batch_alter_table('click_daily', schema=None) as batch_op:
        batch_op.drop_column('held_clicks')

    with op.batch_alter_table('flag_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flag_decisions_flag_id'))

    op.drop_table('flag_decisions')
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.drop_index('ix_flags_status')

    op.drop_table('flags')
