"""Prometheus metrics (GET /metrics). Counters live at module level, as prometheus_client intends;
gauges that need the app (outbox backlog, click buffer lag) are read when scraped."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

CALLBACKS = Counter("partnerbot_callbacks", "WeCom callbacks by outcome", ["result"], registry=REGISTRY)
COMMANDS = Counter("partnerbot_commands", "Chat messages processed by outcome", ["result"], registry=REGISTRY)
REPLY_SECONDS = Histogram("partnerbot_reply_seconds", "From a message being stored to its replies being queued",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
OUTBOX = Counter("partnerbot_outbox_messages", "Outbox deliveries by outcome", ["result"], registry=REGISTRY)
REPLIES = Counter("partnerbot_replies", "Replies to chat messages by channel and how they went: passive (in the "
                  "callback's own answer) or active (through the platform's send API)", ["channel", "how"],
                  registry=REGISTRY)
REDIRECTS = Counter("partnerbot_redirects", "Tracked-link redirects by outcome", ["result"], registry=REGISTRY)
COMMAND_OUTCOMES = Counter("partnerbot_command_outcomes", "Chat commands by command and outcome (done, bad_input, refused)",
                           ["command", "outcome"], registry=REGISTRY)
JOB_RUNS = Counter("partnerbot_job_runs", "Periodic job runs by outcome", ["job", "result"], registry=REGISTRY)
RETENTION_DELETED = Counter("partnerbot_retention_deleted", "Rows, stream entries and cached files the retention job "
                            "deleted, by what (inbox, outbox, clicks, poster_files, ...)", ["what"], registry=REGISTRY)
RETENTION_LAST_RUN = Gauge("partnerbot_retention_last_run_timestamp_seconds", "When this instance last ran the "
                           "retention job for all instances (take the max across instances)", registry=REGISTRY)
OUTBOX_BACKLOG = Gauge("partnerbot_outbox_backlog", "Outbox rows waiting to be sent", registry=REGISTRY)
QUOTA_DEFERRED = Counter("partnerbot_quota_deferred", "Messages the bot sends by itself deferred past WeCom's daily "
                         "send quota (less the share kept for replies), by purpose: reminder, nurture, idle_warning, "
                         "recycled, digest, tier, statement, fraud_flags, lead_notice (a newcomer's deferred cards "
                         "show in partnerbot_outbox_deferred)", ["purpose"], registry=REGISTRY)
QUOTA_DEFERRED_DROPPED = Counter("partnerbot_quota_deferred_dropped", "Deferred messages dropped before the quota had "
                                 "room, no longer worth sending (task over, shared since, a past day's digest, a "
                                 "superseded tier change, a late idle warning, an outdated nurturing prompt)",
                                 registry=REGISTRY)
OUTBOX_DEFERRED = Gauge("partnerbot_outbox_deferred", "Outbox rows waiting for room in WeCom's daily send quota",
                        registry=REGISTRY)
OUTBOX_PARKED = Gauge("partnerbot_outbox_parked", "Outbox rows WeChat refused outside its 48-hour window, "
                      "waiting for the follower to write", registry=REGISTRY)
CLICK_LAG = Gauge("partnerbot_click_buffer_lag", "Clicks recorded but not yet stored in the database",
                  registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
