"""Typed SQLAlchemy models, one module per part of the domain. Schema changes go through Alembic
migrations in store/migrations; everything is importable from here (`from store.models import Lead`)."""
from store.models.base import ROLES, Base, UTCDateTime, utcnow
from store.models.people import Partner, Member, MemberIdentity, MemberTag, Invite, InviteUse, BindingCode, TierChange
from store.models.tasks import TASK_STATUSES, Task, Broadcast, Share, TrackedLink, Click, ClickDaily
from store.models.messaging import InboxMessage, OutboxMessage, JobRun
from store.models.leads import LEAD_STATUSES, Lead, LeadEvent, LeadTouch, AssignmentRule, PoolSettings
from store.models.incentives import PointsEntry, Flag, FlagDecision
from store.models.content import CONTENT_KINDS, CONTENT_STATUSES, ContentItem, ContentTag, ContentAttachment, ContentFile, ContentForward, PendingUpload

__all__ = ["ROLES", "Base", "UTCDateTime", "utcnow", "Partner", "Member", "MemberIdentity", "MemberTag", "Invite", "InviteUse", "BindingCode", "TierChange", "TASK_STATUSES", "Task", "Broadcast", "Share", "TrackedLink", "Click", "ClickDaily", "InboxMessage", "OutboxMessage", "JobRun", "LEAD_STATUSES", "Lead", "LeadEvent", "LeadTouch", "AssignmentRule", "PoolSettings", "PointsEntry", "Flag", "FlagDecision", "CONTENT_KINDS", "CONTENT_STATUSES", "ContentItem", "ContentTag", "ContentAttachment", "ContentFile", "ContentForward", "PendingUpload"]
