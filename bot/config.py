"""Configuration: config.toml, then PARTNERBOT_<SECTION>_<KEY> environment overrides.

Every problem is reported as one ConfigError line naming the key and where its value came from,
so the CLI can print it and exit 2 instead of showing a traceback.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bot.config_checks import ConfigError, secrets_in_file, unknown_environment, validate
from store.fraud import FraudSettings
from store.points import PointsSettings
from store.pool_rules import SETTINGS as POOL_SETTINGS, PoolRules
from store.retention import RetentionSettings
from store.tiers import TierSettings

# Templates, fonts and pages shipped with the code.
ASSETS = Path(__file__).resolve().parents[1] / "assets"

ENV_PREFIX = "PARTNERBOT_"
# Keys an older version knew: a file that still sets one loads, with a warning saying why it is gone.
RETIRED_KEYS = {
    ("wecom", "dedupe_ttl_seconds"): "the database alone spots the platform's retried callbacks",
    ("wechat", "dedupe_ttl_seconds"): "the database alone spots the platform's retried callbacks",
}
CONFIG_ENV = "PARTNERBOT_CONFIG"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    # Largest request body accepted anywhere (callbacks are a few KB; this stops memory abuse).
    max_body_bytes: int = 262144
    # Dates people type and read (task deadlines) are in this zone.
    timezone: str = "Asia/Shanghai"
    # Secret salt for hashing visitor IPs (environment only); empty = random per process, so the
    # hashes of one visitor differ between instances and restarts.
    ip_hash_salt: str = ""
    # Comma-separated IPs/networks of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""


@dataclass
class DatabaseConfig:
    url: str = "sqlite+aiosqlite:///partnerbot.db"
    # PostgreSQL: the server gives up on a statement after this (a frozen connection must not hang
    # a callback). Reports and scans run well within it; the command line has no limit.
    statement_timeout_seconds: float = 30.0


@dataclass
class RedisConfig:
    url: str = ""
    key_prefix: str = "partnerbot:"


@dataclass
class WeComConfig:
    corp_id: str = ""
    agent_id: int = 0
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base_url: str = "https://qyapi.weixin.qq.com"
    # Callbacks whose timestamp is further than this from our clock are refused as replays.
    max_clock_skew_seconds: int = 300
    api_timeout_seconds: float = 10.0
    # WeCom's per-app, per-member limits for message/send; over them messages vanish silently.
    member_messages_per_minute: int = 30
    member_messages_per_hour: int = 1000
    # The corp's licensed accounts: the app may send accounts × 200 messages a day (one per recipient).
    # The broadcast preview shows what a broadcast uses of that and refuses to go past it. 0: count
    # the bot's active members instead (a lower bound: each of them holds an account).
    licensed_accounts: int = 0
    # The share of that daily quota kept free for replies to a member's own message that go through
    # message/send (not passive): automatic messages and marketers' broadcast/remind leave it alone,
    # so a busy day of reminders cannot starve the answers people wait for. 0 to 0.5.
    reply_headroom: float = 0.1
    # WeCom's per-company limits on media/upload (posters, charts, images), shared by every instance.
    media_uploads_per_minute: int = 10000
    media_uploads_per_hour: int = 150000
    # WeCom waits 5 s for the callback's answer: a reply ready within this many seconds goes back in it
    # (a passive reply: one round trip less, and not counted against the app's daily message quota; a
    # picture must be uploaded within it too); later ones, and the rest of a multi-reply answer,
    # through message/send. 0 turns it off.
    passive_reply_seconds: float = 3.0
    # How often each instance reads back what content forwarded to customers (`forward N`) reached.
    forward_check_seconds: float = 600.0
    # `forward N` also makes a Moments (客户朋友圈) task, the member its only sender, for members with
    # customer-contact permission.
    forward_to_moments: bool = False


@dataclass
class WeChatConfig:
    app_id: str = ""
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base_url: str = "https://api.weixin.qq.com"
    # WeChat waits 5 s for the callback's answer: a reply ready within this many seconds goes back in
    # it (a passive reply), later ones through the customer-service API.
    passive_reply_seconds: float = 3.5
    max_clock_skew_seconds: int = 300
    api_timeout_seconds: float = 10.0
    binding_code_hours: int = 72
    # Messages WeChat refused outside its 48-hour window wait for the follower to write; after this
    # many days they are dropped instead (an old task card or reminder is no longer news).
    waiting_days: int = 7

    @property
    def enabled(self) -> bool:
        return bool(self.app_id)


@dataclass
class AdminConfig:
    api_token: str = ""


# [pool]: the rules every pool starts from (each declared once, in store.pool_rules; admins override
# them per pool), then how often each instance looks for idle leads to recycle (each lead is
# recycled once).
PoolConfig = dataclasses.make_dataclass("PoolConfig", [
    *((s.name, s.type, field(default=s.default)) for s in POOL_SETTINGS if s.in_config),
    ("recycle_check_seconds", "float", field(default=300.0))])


@dataclass
class LinksConfig:
    # Repeated clicks of one visitor on one link within this window count once.
    flood_window_seconds: float = 10.0
    # How often buffered clicks are written to the database.
    flush_interval_seconds: float = 0.5
    # Clicks a writer took from the Redis stream but never wrote (it died) are taken over after this.
    stream_reclaim_seconds: float = 30.0
    # Signs the visitor cookie (environment only), so a client cannot invent visitors. Empty: derived
    # from the WeCom app's secrets (one instance); required with Redis (several instances).
    visitor_secret: str = ""


@dataclass
class PostersConfig:
    templates_dir: str = str(ASSETS / "posters")
    # Rendered posters are kept here (keyed by template and content; safe to delete).
    cache_dir: str = "var/posters"


@dataclass
class TasksConfig:
    # The automatic reminder to members who have not shared goes out this long before the deadline.
    remind_before_hours: float = 24.0
    # Members whose card arrived less than this long ago are not reminded yet.
    reminder_min_age_hours: float = 2.0
    # How often each instance looks for tasks due a reminder (exactly one instance sends each).
    reminder_check_seconds: float = 60.0


@dataclass
class StatsConfig:
    # Admins get yesterday's funnel and top partners in chat at this local hour (0-23), once a day.
    digest_enabled: bool = True
    digest_hour: int = 9
    digest_check_seconds: float = 300.0


@dataclass
class TiersConfig(TierSettings):
    # Partners' tiers are recalculated on this day of each month (local time, from digest_hour on).
    recalc_day: int = 1


@dataclass
class PointsConfig(PointsSettings):
    # How often each instance brings the points ledger up to date.
    accrue_check_seconds: float = 600.0


@dataclass
class FraudConfig(FraudSettings):
    # How often each instance runs the fraud rules.
    scan_check_seconds: float = 300.0


@dataclass
class RetentionConfig(RetentionSettings):
    # How often the retention job runs (one instance deletes the shared rows each time).
    check_seconds: float = 3600.0
    # Rendered posters and stamped images nobody asked for in this many days leave the cache
    # (each instance prunes its own [posters] cache_dir); 0 keeps them.
    posters_days: int = 30


@dataclass
class InboxConfig:
    # A message claimed by an instance that died is taken over after this lease.
    lease_seconds: int = 30
    # A message that failed (or crashed its worker) this many times gets an apology, not another try.
    max_attempts: int = 3
    # How often each instance looks for inbox and outbox rows left over by others (or by a crash).
    sweep_interval_seconds: float = 2.0


@dataclass
class OutboxConfig:
    # How many message/send calls one instance has in flight at once.
    concurrency: int = 16
    # Queued rows (a broadcast) are claimed, and marked sent, this many at a time: one statement each.
    claim_batch: int = 200
    lease_seconds: int = 30
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    # WeCom drops an identical resend to one member within this window when we ask it to.
    duplicate_check_interval_seconds: int = 1800
    # After 45009 (a frequency limit) WeCom blocks for the limit's window; after 45033 (too many
    # concurrent calls) a short pause is enough.
    throttle_pause_seconds: float = 60.0
    concurrency_pause_seconds: float = 1.0


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    # Where the simulator delivers callbacks, like the URL set in the WeCom admin console.
    callback_url: str = "http://127.0.0.1:8080/wecom/callback"
    # WeCom waits this long for an HTTP 200 before it retries a callback.
    callback_timeout_seconds: float = 5.0
    callback_retries: int = 3
    # The simulated WeChat Official Account (when [wechat] app_id is set): where its callbacks go,
    # like the server URL in the Official Account console, and its message encryption mode
    # (plain, compatible or safe), and the account's original id (gh_...) messages are addressed to.
    wechat_callback_url: str = "http://127.0.0.1:8080/wechat/callback"
    wechat_mode: str = "safe"
    wechat_original_id: str = "gh_partnerbot0001"


@dataclass
class LogConfig:
    level: str = "INFO"
    format: str = "text"  # or "json": one object per line, for log collectors


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    wecom: WeComConfig = field(default_factory=WeComConfig)
    wechat: WeChatConfig = field(default_factory=WeChatConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    links: LinksConfig = field(default_factory=LinksConfig)
    posters: PostersConfig = field(default_factory=PostersConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    tiers: TiersConfig = field(default_factory=TiersConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    fraud: FraudConfig = field(default_factory=FraudConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = "defaults"
    # What loading found questionable but not wrong (a secret in the file, an unknown PARTNERBOT_*
    # variable): one line each, which the command line prints before it runs.
    warnings: list[str] = field(default_factory=list)

    @property
    def pool_rules(self) -> PoolRules:
        """The rules of every pool before admins' overrides: `[pool]`, with days ending in [server] timezone."""
        return PoolRules(timezone=self.server.timezone,
                         **{s.name: getattr(self.pool, s.name) for s in POOL_SETTINGS if s.in_config})

    def require_wecom(self) -> None:
        """What `serve` needs to talk to a real WeCom app; `demo` fills these in itself."""
        for key in ("corp_id", "secret", "token", "encoding_aes_key"):
            if not getattr(self.wecom, key):
                raise ConfigError(
                    f"{self.source}: [wecom] {key} is missing: set it in the file or in "
                    f"{ENV_PREFIX}WECOM_{key.upper()}"
                )
        if self.wecom.agent_id <= 0:
            raise ConfigError(
                f"{self.source}: [wecom] agent_id is missing: set it to the app's AgentId "
                f"(or {ENV_PREFIX}WECOM_AGENT_ID)"
            )


_SECTION_TYPES = {
    "server": ServerConfig, "database": DatabaseConfig, "redis": RedisConfig, "wecom": WeComConfig,
    "wechat": WeChatConfig, "admin": AdminConfig, "pool": PoolConfig, "tasks": TasksConfig, "links": LinksConfig, "posters": PostersConfig, "stats": StatsConfig, "tiers": TiersConfig, "points": PointsConfig, "fraud": FraudConfig, "retention": RetentionConfig, "inbox": InboxConfig,
    "outbox": OutboxConfig, "simulator": SimulatorConfig, "log": LogConfig,
}


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or "config.toml")


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (the default path may be absent), apply env overrides, validate."""
    environ = os.environ if environ is None else environ
    explicit = path is not None or bool(environ.get(CONFIG_ENV))
    path = Path(path) if path is not None else Path(environ.get(CONFIG_ENV) or "config.toml")
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the file: {err}") from None
    elif explicit:
        raise ConfigError(f"{path}: configuration file not found")

    config = Config(source=str(path))
    retired: list[str] = []
    for section_name, section_values in raw.items():
        section_type = _SECTION_TYPES.get(section_name)
        if section_type is None:
            raise ConfigError(
                f"{path}: unknown section [{section_name}]; known: {', '.join(_SECTION_TYPES)}"
            )
        if not isinstance(section_values, dict):
            raise ConfigError(f"{path}: [{section_name}] must be a table")
        section = getattr(config, section_name)
        known = {f.name: f for f in dataclasses.fields(section_type)}
        for key, value in section_values.items():
            if (section_name, key) in RETIRED_KEYS:  # an older file still starts, and says what to remove
                retired.append(f"{path}: [{section_name}] {key} is no longer used and is ignored "
                               f"({RETIRED_KEYS[section_name, key]}); remove it")
                continue
            if key not in known:
                raise ConfigError(
                    f"{path}: [{section_name}] {key} is not a known key; known: {', '.join(known)}"
                )
            setattr(section, key, _coerce(value, known[key].type, f"{path}: [{section_name}] {key}"))

    env_names = []
    for section_name, section_type in _SECTION_TYPES.items():
        section = getattr(config, section_name)
        for f in dataclasses.fields(section_type):
            env_name = f"{ENV_PREFIX}{section_name.upper()}_{f.name.upper()}"
            env_names.append(env_name)
            if env_name in environ:
                setattr(section, f.name, _coerce(environ[env_name], f.type, f"{env_name} (environment)"))

    validate(config)
    config.warnings = retired + secrets_in_file(path, raw) + unknown_environment(environ, env_names)
    return config


def _coerce(value: Any, type_name: Any, where: str) -> Any:
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    if type_name == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{where}: must be a whole number, got {value!r}")
        try:
            return int(str(value).strip()) if isinstance(value, str) else _exact_int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: must be a whole number, got {value!r}") from None
    if type_name == "float":
        if isinstance(value, bool):
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: must be a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    return value


def _exact_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)
