"""Each pool rule is declared once, in store.pool_rules.PoolRules; these tests fail when a rule is
added (or changed) there and not in a place that cannot follow it by itself: the overrides'
columns (a migration), config.toml and the README. Config loading and the admin API are driven
through the declaration, so they are checked to accept exactly what it declares."""
import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Integer, String

from bot.config import Config, ConfigError, PoolConfig, load_config
from store.models import PoolSettings
from store.pool_rules import EDITABLE, SETTINGS, PoolRules, PoolSetting, check_changes

ROOT = Path(__file__).resolve().parent.parent
COLUMN_TYPES = {"int": Integer, "bool": Boolean, "str": String}
IN_CONFIG = [s for s in SETTINGS if s.in_config]


def good_value(s: PoolSetting) -> Any:
    """A value other than the default that the rule accepts."""
    if s.choices:
        return s.choices[-1]
    if s.type == "bool":
        return not s.default
    assert s.limits is not None, f"{s.name}: an int rule needs limits"
    return s.limits[1]


def bad_values(s: PoolSetting) -> list[Any]:
    if s.choices:
        return ["platinum", 1]
    if s.type == "bool":
        return [1, "true"]
    assert s.limits is not None
    return [s.limits[0] - 1, s.limits[1] + 1, str(s.default), True]


def test_the_declaration_is_whole() -> None:
    assert [s.name for s in SETTINGS] == [f.name for f in dataclasses.fields(PoolRules)]
    for s in SETTINGS:
        assert s.type in COLUMN_TYPES and s.help, s.name
        assert s.problem(s.default) is None, f"{s.name}: the default breaks its own limits"
        if not (s.editable or s.in_config):
            continue  # the deployment's, checked where it is set (the timezone: [server])
        assert s.problem(good_value(s)) is None, s.name
        assert all(s.problem(v) for v in bad_values(s)), s.name


def test_every_editable_rule_has_a_column_of_its_type() -> None:
    columns = {c.name: c for c in PoolSettings.__table__.columns if c.name not in ("id", "scope", "partner_id", "updated_at")}
    assert sorted(columns) == sorted(EDITABLE)
    for s in SETTINGS:
        if s.editable:
            assert isinstance(columns[s.name].type, COLUMN_TYPES[s.type]) and columns[s.name].nullable, s.name


def test_pool_config_is_the_rules_in_config_and_the_recycling_interval() -> None:
    fields = {f.name: f for f in dataclasses.fields(PoolConfig)}
    assert list(fields) == [s.name for s in IN_CONFIG] + ["recycle_check_seconds"]
    for s in IN_CONFIG:
        assert (fields[s.name].type, fields[s.name].default) == (s.type, s.default)
    rules = Config().pool_rules
    assert rules == PoolRules(timezone=rules.timezone)  # the config's defaults are the declaration's


def test_config_toml_lists_every_rule_in_config_at_its_default() -> None:
    shipped = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))["pool"]
    assert {name: value for name, value in shipped.items() if name != "recycle_check_seconds"} == {
        s.name: s.default for s in IN_CONFIG}


def test_the_readme_names_every_rule() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [s.name for s in SETTINGS if s.editable and f"`{s.name}`" not in readme] == []


@pytest.mark.parametrize("setting", IN_CONFIG, ids=lambda s: s.name)
def test_config_takes_each_rule_and_checks_it(setting: PoolSetting, tmp_path: Path) -> None:
    env, empty = f"PARTNERBOT_POOL_{setting.name.upper()}", tmp_path / "config.toml"
    empty.write_text("")
    value = good_value(setting)
    config = load_config(empty, environ={env: str(value).lower()})
    assert getattr(config.pool_rules, setting.name) == value
    if setting.limits:
        with pytest.raises(ConfigError, match=rf"\[pool\] {setting.name} must be a whole number from"):
            load_config(empty, environ={env: str(setting.limits[1] + 1)})


def test_admins_may_not_set_what_is_not_editable() -> None:
    for s in SETTINGS:
        if not s.editable:
            with pytest.raises(ValueError, match="unknown rule"):
                check_changes({s.name: s.default})


async def test_the_admin_api_takes_exactly_the_editable_rules(api) -> None:  # type: ignore[no-untyped-def]
    _, http = api
    for s in SETTINGS:
        if not s.editable:
            async with http.patch("/api/pools/public/rules", json={s.name: s.default}) as r:
                assert (r.status, (await r.json())["field"]) == (422, s.name)
        for bad in bad_values(s) if s.editable else []:
            async with http.patch("/api/pools/public/rules", json={s.name: bad}) as r:
                assert (r.status, (await r.json())["field"]) == (422, s.name), (s.name, bad)
    wanted = {s.name: good_value(s) for s in SETTINGS if s.editable}
    async with http.patch("/api/pools/public/rules", json=wanted) as r:
        assert r.status == 200
        shown = await r.json()
    assert shown["overrides"] == wanted and shown["rules"] == wanted
