"""The rules of each pool (DESIGN §5): `[pool]` in config for every pool, overridden per pool by
admins through the admin API (stored in the database so every instance applies the same)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import PoolSettings, utcnow

TIERS = ("registered", "silver", "gold")
TIER_NAMES = {"registered": "注册", "silver": "银牌", "gold": "金牌"}
_RANK = {tier: i for i, tier in enumerate(TIERS)}


def at_least(tier: str | None, minimum: str | None) -> bool:
    return _RANK.get(tier or "registered", 0) >= _RANK.get(minimum or "registered", 0)


def _rule(default: Any, help: str, *, limits: tuple[int, int] | None = None, choices: tuple[str, ...] = (),
          editable: bool = True, in_config: bool = True) -> Any:
    """One rule's declaration. `editable`: admins may override it per pool (a PoolSettings column);
    `in_config`: a `[pool]` key. Limits bound both: beyond them a value is surely a typo (and would
    overflow date sums)."""
    return field(default=default, metadata={"help": help, "limits": limits, "choices": choices,
                                            "editable": editable, "in_config": in_config})


@dataclass(frozen=True, kw_only=True)  # by name: a positional list would be one more to keep in step
class PoolRules:
    """One pool's rules, each declared once, here: `[pool]` in config, the checks of it and of an
    admin's overrides, and the overrides' columns all follow from these (tests/test_pool_settings.py
    ties them together)."""

    daily_claim_limit: int = _rule(10, "leads one member may claim per local day", limits=(0, 100_000))
    max_held: int = _rule(30, "open leads one member may hold at once", limits=(0, 100_000))
    idle_days: int = _rule(7, "days without a follow-up before a claimed lead goes back to its pool",
                           limits=(1, 3650))
    cooldown_days: int = _rule(30, "days before a member may claim a lead they gave back (or lost to recycling)",
                               limits=(0, 3650))
    protect_days: int = _rule(14, "days a lead from a member's own link is theirs alone", limits=(0, 3650))
    return_reason_required: bool = _rule(True, "whether giving a lead back needs a reason")
    embargo_hours: int = _rule(0, "hours a new lead waits before anyone may claim it", limits=(0, 24 * 365))
    # Not in config (every pool is open to all by default); admins close a pool to lower tiers.
    min_tier: str = _rule("registered", "members of partners below this tier neither see nor claim the pool's leads",
                          choices=TIERS, in_config=False)
    timezone: str = _rule("Asia/Shanghai", "where claiming days end: always [server] timezone",
                          editable=False, in_config=False)


@dataclass(frozen=True)
class PoolSetting:
    """What is declared of one rule in PoolRules, for the code that loads, checks and stores it."""

    name: str
    type: str  # "int", "bool" or "str", as the config loader reads it
    default: Any
    help: str
    limits: tuple[int, int] | None
    choices: tuple[str, ...]
    editable: bool
    in_config: bool

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this rule (None: nothing), e.g. "must be true or false"."""
        if self.choices:
            return None if isinstance(value, str) and value in self.choices else f"must be one of {', '.join(self.choices)}"
        if self.type == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.limits is None:
            return None
        low, high = self.limits
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"must be a whole number from {low} to {high}"


SETTINGS = tuple(PoolSetting(f.name, f.type if isinstance(f.type, str) else f.type.__name__, f.default,
                             **f.metadata) for f in fields(PoolRules))
# What an admin may set per pool (the rest, like the timezone, is the deployment's).
EDITABLE = tuple(s.name for s in SETTINGS if s.editable)
_BY_NAME = {s.name: s for s in SETTINGS}


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


async def rule_book(session: AsyncSession, default: PoolRules) -> RuleBook:
    """`default` (the deployment's rules, from config) with every pool's overrides applied."""
    overrides = {s.partner_id: _apply(default, s) for s in await session.scalars(select(PoolSettings))}
    return RuleBook(default, overrides)


class BadRules(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate an admin's overrides: known names, each value as its rule is declared (or null = back
    to the config value). BadRules names the first problem."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise BadRules(f"unknown rule(s): {', '.join(unknown)}; rules are {', '.join(EDITABLE)}", unknown[0])
    for name, value in changes.items():
        problem = None if value is None else _BY_NAME[name].problem(value)
        if problem:
            raise BadRules(f"{name} {problem}", name)
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
