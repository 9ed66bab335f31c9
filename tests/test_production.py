"""docs/production.md and deploy/ stay true: the systemd units run real CLI commands, the environment
example is a configuration `serve` accepts, nginx and Prometheus point at the units' ports, /healthz
and /metrics answer as documented (every metric in the table, and only those), and X-Forwarded-For
is believed from a trusted proxy only."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bot.app import CLICKS, SHARED, VISITORS
from bot.config import Config, load_config
from bot.web.links import ClientAddress
from tests.conftest import ADMIN_TOKEN, Stack, aes_key, make_config, seed, start_stack
from tests.test_links import BROWSER, link_code, stored_clicks, task_for_p1

REPO = Path(__file__).resolve().parents[1]
DEPLOY, DOCS = REPO / "deploy", (REPO / "docs" / "production.md").read_text(encoding="utf-8")
PARTNERBOT = Path(sys.executable).parent / "partnerbot"


def unit_file(name: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "partnerbot.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def is_config_key(env_name: str) -> bool:
    """Whether PARTNERBOT_<SECTION>_<KEY> names a real setting (a typo would be silently ignored)."""
    for section in dataclasses.fields(Config):
        prefix = f"PARTNERBOT_{section.name.upper()}_"
        if section.name != "source" and env_name.startswith(prefix):
            keys = {f.name for f in dataclasses.fields(getattr(Config(), section.name))}
            if env_name.removeprefix(prefix).lower() in keys:
                return True
    return False


def help_of(words: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PARTNERBOT), *words, "--help"], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, command", [("partnerbot@.service", ["serve"]),
                                           ("partnerbot-migrate.service", ["migrate"])])
def test_the_units_run_real_commands(name: str, command: list[str]) -> None:
    service = unit_file(name)["Service"]
    run = [shlex.split(line.lstrip("-+!@:")) for key in ("ExecStartPre", "ExecStart") for line in service.get(key, [])]
    assert [words[1:] for words in run] == [command]
    for words in run:
        assert Path(words[0]).name == "partnerbot"
        done = help_of(words[1:])
        assert done.returncode == 0 and f"usage: partnerbot {' '.join(words[1:])}" in done.stdout, done.stderr
    assert service["EnvironmentFile"] == ["/etc/partnerbot/partnerbot.env"]
    for setting in service.get("Environment", []):
        assert is_config_key(setting.split("=", 1)[0]), setting


def test_instances_migrate_first_and_each_take_their_port() -> None:
    instance = unit_file("partnerbot@.service")
    assert "partnerbot-migrate.service" in instance["Unit"]["Requires"][0].split()
    assert "partnerbot-migrate.service" in instance["Unit"]["After"][0].split()
    assert "PARTNERBOT_SERVER_PORT=%i" in instance["Service"]["Environment"]
    assert unit_file("partnerbot-migrate.service")["Service"]["Type"] == ["oneshot"]
    # The environment file would override the unit's port (systemd: EnvironmentFile wins).
    assert "PARTNERBOT_SERVER_PORT" not in env_example()


def test_the_environment_example_is_a_configuration_serve_accepts(tmp_path: Path) -> None:
    example = env_example()
    assert all(is_config_key(key) for key in example), [key for key in example if not is_config_key(key)]
    filled = {key: value or "filled-in-secret-0123456789" for key, value in example.items()}
    filled |= {"PARTNERBOT_WECOM_ENCODING_AES_KEY": aes_key(), "PARTNERBOT_WECOM_AGENT_ID": "1000002",
               "PARTNERBOT_WECOM_CORP_ID": "ww0123456789abcdef"}
    config = load_config(_empty(tmp_path), environ=filled)
    config.require_wecom()
    assert config.redis.url and config.database.url.startswith("postgresql+asyncpg://")


def _empty(folder: Path) -> Path:
    """A config file with nothing in it: the environment alone configures the bot."""
    path = folder / "config.toml"
    path.write_text("")
    return path


def test_nginx_and_prometheus_point_at_the_instances() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstream = re.search(r"upstream partnerbot \{(.*?)\}", nginx, re.S)
    assert upstream
    servers = re.findall(r"server (127\.0\.0\.1):(\d+);", upstream.group(1))
    assert len(servers) >= 2
    # nginx reaches the instances from 127.0.0.1: that is the proxy the bot must trust.
    trusted = env_example()["PARTNERBOT_SERVER_TRUSTED_PROXIES"].split(",")
    assert {host for host, _ in servers} <= set(trusted)
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    assert re.search(r"listen 443 ssl;", nginx) and "return 301 https://" in nginx
    scrape = re.search(r"```yaml\n(.*?)```", DOCS, re.S)
    assert scrape and "metrics_path: /metrics" in scrape.group(1) and "type: Bearer" in scrape.group(1)
    assert sorted(re.findall(r'"bot-host:(\d+)"', scrape.group(1))) == sorted(port for _, port in servers)


def test_every_command_in_the_document_is_real() -> None:
    commands = set(re.findall(r"(?:`|/bin/|^)partnerbot ([a-z]+)\b", DOCS, re.M))
    assert {"migrate", "serve", "backup"} <= commands
    for command in commands:
        done = help_of([command])
        assert done.returncode == 0, f"docs/production.md mentions `partnerbot {command}`: {done.stderr}"


def documented_metrics() -> set[str]:
    table = DOCS.split("| metric | type | what |", 1)[1].split("\n\n", 1)[0]
    return {re.sub(r"_total$", "", name) for name in re.findall(r"^\| `(partnerbot_[a-z_]+)", table, re.M)}


@pytest.fixture
async def production_stack(sqlite_url: str, redis_url: str) -> AsyncIterator[Stack]:
    """As deployed: Redis, an admin token, TLS in front (https base URL) and nginx on 127.0.0.1."""
    await seed(sqlite_url)
    config = make_config(sqlite_url, redis_url)
    config.admin.api_token = ADMIN_TOKEN
    config.server.public_base_url = "https://bot.example.com"
    config.server.trusted_proxies = "127.0.0.1,::1"
    running = await start_stack(config)
    yield running
    await running.stop()


async def test_health_and_metrics_answer_as_documented(production_stack: Stack) -> None:
    stack = production_stack
    async with aiohttp.ClientSession(base_url=stack.bot_url) as http:
        async with http.get("/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "database": "ok", "redis": "ok"}
        async with http.get("/metrics") as response:
            assert response.status == 401
        async with http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
            assert response.status == 200
            exposed = {family.name for family in text_string_to_metric_families(await response.text())}
        # (The text parser also lists each counter's and histogram's `_created` sample as a family.)
        assert documented_metrics() == {name for name in exposed
                                        if name.startswith("partnerbot_") and not name.endswith("_created")}
        working = stack.bot[SHARED].redis
        stack.bot[SHARED].redis = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)
        try:
            async with http.get("/healthz") as response:
                assert response.status == 503
                answer = await response.json()
                assert answer["ok"] is False and answer["database"] == "ok" and answer["redis"].startswith("error: ")
        finally:
            await stack.bot[SHARED].redis.aclose()
            stack.bot[SHARED].redis = working


def ip_hash(config: Config, address: str) -> str:
    return hmac.new(config.server.ip_hash_salt.encode(), address.encode(), hashlib.sha256).hexdigest()


async def test_forwarded_for_is_believed_from_the_trusted_proxy_only(production_stack: Stack) -> None:
    stack = production_stack
    await task_for_p1(stack)
    code = await link_code(stack)
    stack.bot[CLICKS].flood_window = 0
    # What nginx sends: whatever the client claimed, then the address nginx saw ($proxy_add_x_forwarded_for).
    forwarded = {"User-Agent": BROWSER, "X-Forwarded-For": "198.51.100.66, 203.0.113.5",
                 "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}

    async def tap() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.get(f"{stack.bot_url}/t/{code}", headers=forwarded, allow_redirects=False) as response:
                assert response.status == 302 and "evil.example" not in response.headers["Location"]
                assert "Secure" in response.headers["Set-Cookie"]  # from the https base URL, not the header
            async with http.get(f"{stack.bot_url}/l/{code}", headers=forwarded) as response:
                assert response.status == 200 and "evil.example" not in await response.text()

    await tap()
    # The same request from a peer that is not a trusted proxy: its X-Forwarded-For is not believed.
    stack.bot[VISITORS].addresses = ClientAddress("10.0.0.0/8")
    await tap()
    assert [c.ip_hash for c in await stored_clicks(stack)] == [ip_hash(stack.config, "203.0.113.5"),
                                                               ip_hash(stack.config, "127.0.0.1")]
