"""pending uploads

The image or file a marketer last sent to the bot in WeCom (its media id, type and name), waiting for
`keep title | tags`: one row per member, the newest wins.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 04:40:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pending_uploads',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('media_id', sa.String(length=255), nullable=False),
    sa.Column('media_type', sa.String(length=16), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('received_at', store.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_pending_uploads_member_id_members'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_pending_uploads'))
    )


def downgrade() -> None:
    op.drop_table('pending_uploads')
