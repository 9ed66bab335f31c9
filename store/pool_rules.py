"""The rules of each pool (DESIGN §5): `[pool]` in config for every pool, overridden per pool by
admins through the admin API (stored in the database so every instance applies the same)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import PoolSettings, utcnow


@dataclass(frozen=True)
class PoolRules:
    daily_claim_limit: int
    max_held: int
    cooldown_days: int
    return_reason_required: bool
    embargo_hours: int
    timezone: str
    idle_days: int = 7
    protect_days: int = 14
    # Members of partners below this tier neither see nor claim the pool's leads.
    min_tier: str = "registered"


# What an admin may set per pool (the rest, like the timezone, is the deployment's).
EDITABLE = ("daily_claim_limit", "max_held", "idle_days", "cooldown_days", "protect_days",
            "return_reason_required", "embargo_hours", "min_tier")
TIERS = ("registered", "silver", "gold")
TIER_NAMES = {"registered": "注册", "silver": "银牌", "gold": "金牌"}
_RANK = {tier: i for i, tier in enumerate(TIERS)}


def at_least(tier: str | None, minimum: str | None) -> bool:
    return _RANK.get(tier or "registered", 0) >= _RANK.get(minimum or "registered", 0)


@dataclass(frozen=True)
class RuleBook:
    """The rules of every pool: `[pool]` in config for all, overridden per pool by admins (stored
    in the database, so every instance applies the same). Keyed by the pool's partner id, None =
    the public pool. The rules of the pool a lead is in govern claiming and returning it."""

    default: PoolRules
    overrides: dict[int | None, PoolRules] = field(default_factory=dict)

    def of(self, pool_partner_id: int | None) -> PoolRules:
        return self.overrides.get(pool_partner_id, self.default)

    @property
    def shortest_idle_days(self) -> int:
        return min([self.default.idle_days, *(r.idle_days for r in self.overrides.values())])


def _apply(rules: PoolRules, settings: PoolSettings) -> PoolRules:
    changes = {name: getattr(settings, name) for name in EDITABLE if getattr(settings, name) is not None}
    return replace(rules, **changes)


async def rule_book(session: AsyncSession, config) -> RuleBook:  # type: ignore[no-untyped-def]
    default = rules_from(config)
    overrides = {s.partner_id: _apply(default, s) for s in await session.scalars(select(PoolSettings))}
    return RuleBook(default, overrides)


def rules_from(config) -> PoolRules:  # type: ignore[no-untyped-def]
    p = config.pool
    return PoolRules(p.daily_claim_limit, p.max_held, p.cooldown_days, p.return_reason_required, p.embargo_hours,
                     config.server.timezone, p.idle_days, p.protect_days)


# Bounds an admin may set; beyond them a value is surely a typo (and would overflow date sums).
LIMITS = {"daily_claim_limit": (0, 100_000), "max_held": (0, 100_000), "idle_days": (1, 3650),
          "cooldown_days": (0, 3650), "protect_days": (0, 3650), "embargo_hours": (0, 24 * 365)}


class BadRules(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate an admin's overrides: known names, whole numbers within bounds (or null = back to
    the config value), a true/false for return_reason_required. BadRules names the first problem."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise BadRules(f"unknown rule(s): {', '.join(unknown)}; rules are {', '.join(EDITABLE)}", unknown[0])
    for name, value in changes.items():
        if value is None:
            continue
        if name == "min_tier":
            if value not in TIERS:
                raise BadRules(f"{name} must be one of {', '.join(TIERS)}", name)
            continue
        if name == "return_reason_required":
            if not isinstance(value, bool):
                raise BadRules(f"{name} must be true or false", name)
            continue
        low, high = LIMITS[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise BadRules(f"{name} must be a whole number from {low} to {high}", name)
    return changes


def scope_of(partner_id: int | None) -> str:
    return "public" if partner_id is None else f"partner:{partner_id}"


async def set_overrides(session: AsyncSession, partner_id: int | None, changes: dict[str, Any]) -> PoolSettings:
    """Change some of one pool's rules, leaving the others as they were."""
    check_changes(changes)
    settings = await session.scalar(select(PoolSettings).where(PoolSettings.scope == scope_of(partner_id)))
    if settings is None:
        settings = PoolSettings(scope=scope_of(partner_id), partner_id=partner_id)
        session.add(settings)
    for name, value in changes.items():
        setattr(settings, name, value)
    settings.updated_at = utcnow()
    await session.flush()
    return settings
