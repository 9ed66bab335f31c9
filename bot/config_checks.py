"""Value checks for a loaded configuration: every bad value is one line naming the key and the file."""
from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from store.pool_rules import SETTINGS as POOL_SETTINGS
from store.retention import problems as retention_problems

if TYPE_CHECKING:  # bot/config.py imports this module to check what it loaded
    from bot.config import Config


class ConfigError(Exception):
    """A wrong or missing configuration value; str(err) is one line for the operator."""


def _is_aes_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key + "=", validate=True)) == 32
    except binascii.Error:
        return False


def validate(config: Config) -> None:
    where = config.source

    def fail(key: str, problem: str) -> None:
        raise ConfigError(f"{where}: {key} {problem}")

    for key, port in (("[server] port", config.server.port), ("[simulator] port", config.simulator.port)):
        if not 0 <= port <= 65535:
            fail(key, f"must be a port number 0-65535, got {port}")
    for key, url in (
        ("[server] public_base_url", config.server.public_base_url),
        ("[wecom] api_base_url", config.wecom.api_base_url),
        ("[wechat] api_base_url", config.wechat.api_base_url),
        ("[simulator] callback_url", config.simulator.callback_url),
        ("[simulator] wechat_callback_url", config.simulator.wechat_callback_url),
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            fail(key, f"must be an http(s) URL, got {url!r}")
    if config.simulator.wechat_mode not in ("plain", "compatible", "safe"):
        fail("[simulator] wechat_mode", f"must be plain, compatible or safe, got {config.simulator.wechat_mode!r}")
    db_scheme = config.database.url.split(":", 1)[0]
    if db_scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        fail("[database] url", "must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
             f"got {config.database.url.split('://', 1)[0]!r}")
    if config.redis.url and urlsplit(config.redis.url).scheme not in ("redis", "rediss", "unix"):
        fail("[redis] url", "must be empty (no Redis) or a redis:// URL")
    # Several instances must agree on who a visitor is: the same IP hash, the same cookie signature.
    for key, env, value in (("[server] ip_hash_salt", "SERVER_IP_HASH_SALT", config.server.ip_hash_salt),
                            ("[links] visitor_secret", "LINKS_VISITOR_SECRET", config.links.visitor_secret)):
        if config.redis.url and not value:
            fail(key, f"must be set when [redis] url is (every instance needs the same one): set "
                 f"PARTNERBOT_{env} to a long random string")
    for section, console in (("wecom", "WeCom"), ("wechat", "WeChat Official Account")):
        key = getattr(config, section).encoding_aes_key
        if key and (len(key) != 43 or not _is_aes_key(key)):
            fail(f"[{section}] encoding_aes_key", f"must be the 43-character EncodingAESKey from the {console} "
                 f"console (letters and digits), got {len(key)} characters")
    if config.wechat.enabled and not config.wechat.token:
        fail("[wechat] token", "must be set when [wechat] app_id is (it signs every callback)")
    for section, console in (("wecom", "WeCom"), ("wechat", "WeChat")):
        seconds = getattr(config, section).passive_reply_seconds
        if not 0 <= seconds <= 4.5:
            fail(f"[{section}] passive_reply_seconds", f"must be from 0 to 4.5 ({console} waits 5 s for the answer), "
                 f"got {seconds}")
    if not Path(config.posters.templates_dir).is_dir():
        fail("[posters] templates_dir", f"is not a folder: {config.posters.templates_dir!r}")
    for proxy in filter(None, (p.strip() for p in config.server.trusted_proxies.split(","))):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            fail("[server] trusted_proxies", f"has {proxy!r}, which is not an IP address or network")
    try:
        ZoneInfo(config.server.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fail("[server] timezone", f"must be an IANA time zone such as Asia/Shanghai, got {config.server.timezone!r}")
    if config.database.statement_timeout_seconds < 0:
        fail("[database] statement_timeout_seconds", "must be 0 (no limit) or more")
    if config.server.max_body_bytes < 1024:
        fail("[server] max_body_bytes", "must be at least 1024")
    if not 1 <= config.tiers.recalc_day <= 28:
        fail("[tiers] recalc_day", f"must be a day from 1 to 28 (every month has it), got {config.tiers.recalc_day}")
    if not 1 <= config.tiers.window_days <= 366:
        fail("[tiers] window_days", f"must be from 1 to 366, got {config.tiers.window_days}")
    for key in ("silver_unique_clicks", "silver_leads", "silver_revenue", "gold_unique_clicks", "gold_leads", "gold_revenue"):
        if getattr(config.tiers, key) < 0:
            fail(f"[tiers] {key}", f"must not be negative, got {getattr(config.tiers, key)}")
    for key in ("share", "unique_click", "lead", "won_deal"):
        if not 0 <= getattr(config.points, key) <= 100_000:
            fail(f"[points] {key}", f"must be from 0 to 100000, got {getattr(config.points, key)}")
    for key in ("commission_registered", "commission_silver", "commission_gold"):
        if not 0 <= getattr(config.points, key) <= 1:
            fail(f"[points] {key}", f"must be a fraction from 0 to 1 (0.05 = 5 %), got {getattr(config.points, key)}")
    for key in ("visitor_clicks_per_day", "ip_clicks_per_day", "burst_min_clicks", "lead_ratio_min_leads",
                "duplicate_phone_days", "scan_window_hours"):
        if getattr(config.fraud, key) < 1:
            fail(f"[fraud] {key}", f"must be at least 1, got {getattr(config.fraud, key)}")
    if not 1 <= config.points.settle_days <= 366:
        fail("[points] settle_days", f"must be from 1 to 366, got {config.points.settle_days}")
    if not 0 <= config.stats.digest_hour <= 23:
        fail("[stats] digest_hour", f"must be an hour from 0 to 23, got {config.stats.digest_hour}")
    if config.log.format not in ("text", "json"):
        fail("[log] format", f"must be text or json, got {config.log.format!r}")
    if config.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail("[log] level", f"must be DEBUG, INFO, WARNING or ERROR, got {config.log.level!r}")
    if config.wecom.licensed_accounts < 0:
        fail("[wecom] licensed_accounts", f"must be 0 (count the members) or the number of licensed accounts, "
             f"got {config.wecom.licensed_accounts}")
    if not 0 <= config.wecom.reply_headroom <= 0.5:
        fail("[wecom] reply_headroom", f"must be a share of the daily send quota from 0 to 0.5 (0.1 = 10 % kept "
             f"for replies; more would leave too little for tasks and notices), got {config.wecom.reply_headroom}")
    for key, value in (
        ("[inbox] lease_seconds", config.inbox.lease_seconds),
        ("[inbox] max_attempts", config.inbox.max_attempts),
        ("[outbox] lease_seconds", config.outbox.lease_seconds),
        ("[outbox] max_attempts", config.outbox.max_attempts),
        ("[outbox] concurrency", config.outbox.concurrency),
        ("[outbox] claim_batch", config.outbox.claim_batch),
        ("[wecom] member_messages_per_minute", config.wecom.member_messages_per_minute),
        ("[wecom] member_messages_per_hour", config.wecom.member_messages_per_hour),
        ("[wecom] media_uploads_per_minute", config.wecom.media_uploads_per_minute),
        ("[wecom] media_uploads_per_hour", config.wecom.media_uploads_per_hour),
        ("[wecom] max_clock_skew_seconds", config.wecom.max_clock_skew_seconds),
        ("[wechat] max_clock_skew_seconds", config.wechat.max_clock_skew_seconds),
        ("[wechat] binding_code_hours", config.wechat.binding_code_hours),
        ("[wechat] waiting_days", config.wechat.waiting_days),
    ):
        if value < 1:
            fail(key, f"must be at least 1, got {value}")
    for key, problem in retention_problems(config.retention):
        fail(f"[retention] {key}", problem)
    if not 0 <= config.retention.posters_days <= 36_500:
        fail("[retention] posters_days", f"must be from 0 (keep) to 36500, got {config.retention.posters_days}")
    if config.retention.check_seconds < 60:
        fail("[retention] check_seconds", f"must be at least 60, got {config.retention.check_seconds}")
    # The same bounds as an admin's overrides: beyond them a value is surely a typo.
    for setting in (s for s in POOL_SETTINGS if s.in_config):
        value = getattr(config.pool, setting.name)
        if problem := setting.problem(value):
            fail(f"[pool] {setting.name}", f"{problem}, got {value}")


# Keys whose values are secrets: the README and docs/DESIGN.md §7 say they belong in the environment,
# where they stay out of version control and out of copies of the file.
SECRET_KEYS = (("wecom", "secret"), ("wecom", "token"), ("wecom", "encoding_aes_key"), ("wechat", "secret"),
               ("wechat", "token"), ("wechat", "encoding_aes_key"), ("admin", "api_token"),
               ("server", "ip_hash_salt"), ("links", "visitor_secret"))
# Environment variables of ours that are no config key: the file's path, and the test suite's servers.
NOT_KEYS = ("PARTNERBOT_CONFIG", "PARTNERBOT_TEST_")


def secrets_in_file(path: Path | str, raw: dict[str, Any]) -> list[str]:
    """One warning per secret written in the configuration file (and per URL carrying a password)."""
    warnings = []
    for section, key in SECRET_KEYS:
        if (raw.get(section) or {}).get(key):
            env = f"PARTNERBOT_{section.upper()}_{key.upper()}"
            warnings.append(f"{path}: [{section}] {key} is a secret written in the file: move it to the "
                            f"environment ({env}) and remove it from the file")
    for section in ("database", "redis"):
        url = (raw.get(section) or {}).get("url")
        if isinstance(url, str) and urlsplit(url).password:
            warnings.append(f"{path}: [{section}] url carries a password: set the URL in the environment "
                            f"(PARTNERBOT_{section.upper()}_URL) instead")
    return warnings


def unknown_environment(environ: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """One warning per PARTNERBOT_* variable that sets no key (a typo is otherwise silently ignored),
    naming the closest real one."""
    prefix = "PARTNERBOT_"
    keys = sorted(name.removeprefix(prefix) for name in known)  # the shared prefix would make all look close
    warnings = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name.removeprefix(prefix) in keys or name.startswith(NOT_KEYS):
            continue
        close = difflib.get_close_matches(name.removeprefix(prefix), keys, n=1, cutoff=0.6)
        hint = f"did you mean {prefix}{close[0]}?" if close else "no configuration key has this name"
        warnings.append(f"environment: {name} is not a configuration key and is ignored; {hint}")
    return warnings
