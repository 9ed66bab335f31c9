"""member identities

A member's id on a channel other than WeCom moves from the `members.wechat_openid` column to rows of
`member_identities` (channel, external_id, member_id), so a new channel is new rows, not a new
column. Every bound openid is copied with the time of the binding code that bound it (or now), then
the column goes. Downgrade copies the WeChat rows back (other channels' rows have nowhere to go).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 03:40:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


# On SQLite, batch mode rebuilds `members` to add or drop a column, and dropping the old table
# cascades to member_identities (foreign keys are on): the openids wait in a scratch table meanwhile.
_SCRATCH = '_member_openids_0017'


def upgrade() -> None:
    op.execute(sa.text(
        f"CREATE TABLE {_SCRATCH} AS SELECT m.id AS member_id, m.wechat_openid AS external_id, "
        "(SELECT MAX(b.used_at) FROM binding_codes b WHERE b.member_id = m.id AND b.used_by = m.wechat_openid) AS bound_at "
        "FROM members m WHERE m.wechat_openid IS NOT NULL"))
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_members_wechat_openid'), type_='unique')
        batch_op.drop_column('wechat_openid')

    op.create_table('member_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('created_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_identities_member_id_members'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_member_identities')),
    sa.UniqueConstraint('channel', 'external_id', name=op.f('uq_member_identities_channel')),
    sa.UniqueConstraint('member_id', 'channel', name=op.f('uq_member_identities_member_id'))
    )
    with op.batch_alter_table('member_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_member_identities_member_id'), ['member_id'], unique=False)
    op.execute(sa.text(
        "INSERT INTO member_identities (channel, external_id, member_id, created_at) "
        f"SELECT 'wechat', external_id, member_id, COALESCE(bound_at, CURRENT_TIMESTAMP) FROM {_SCRATCH}"))
    op.drop_table(_SCRATCH)


def downgrade() -> None:
    op.execute(sa.text(f"CREATE TABLE {_SCRATCH} AS SELECT member_id, external_id FROM member_identities "
                       "WHERE channel = 'wechat'"))
    with op.batch_alter_table('member_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_identities_member_id'))
    op.drop_table('member_identities')

    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wechat_openid', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_members_wechat_openid'), ['wechat_openid'])
    op.execute(sa.text(f"UPDATE members SET wechat_openid = (SELECT s.external_id FROM {_SCRATCH} s "
                       "WHERE s.member_id = members.id)"))
    # Pushes to a channel that no longer exists in this schema go back to WeCom.
    op.execute(sa.text("UPDATE members SET push_channel = 'wecom' WHERE push_channel NOT IN ('wecom', 'wechat')"))
    op.drop_table(_SCRATCH)
