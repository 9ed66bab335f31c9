"""`partnerbot check` against the simulator: every misconfiguration the simulator can act out
(bot/simulator/faults.py, the visible range, outages) gets its one-line explanation and exit code 1;
a working set-up exits 0. Runs the command in-process (cmd_check, its own event loop in a thread) and
once as a real subprocess."""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.cli import EXIT_BAD_DATA, EXIT_OK, EXIT_USAGE, cmd_check
from bot.config import Config
from bot.simulator import WeComSimulator
from bot.simulator.wechat_protocol import menu_as_stored
from handlers.menu import MENU
from store.db import migrate
from tests.conftest import FOLLOWERS, REDIS_URL, Stack, aes_key, free_port, make_config, simulator_for, wechat_simulator_for


class Setup:
    def __init__(self, config: Config, sim: WeComSimulator, url: str) -> None:
        self.config, self.sim, self.url = config, sim, url


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file for the module; each test gets a copy (the check only reads it)."""
    path = tmp_path_factory.mktemp("doctor") / "template.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def setup(migrated_template: Path, tmp_path: Path) -> AsyncIterator[Setup]:
    """A WeCom app and an Official Account (with partnerbot's menu) in the simulator, configured right,
    on a migrated database."""
    shutil.copy(migrated_template, tmp_path / "bot.db")
    config = make_config(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    config.wecom.token = "Tok" + secrets.token_hex(8)  # as the console's 随机获取 makes them: letters and digits
    bot_port = free_port()
    wechat = wechat_simulator_for(config, bot_port, "safe", FOLLOWERS)
    config.wechat.token = "Mp" + secrets.token_hex(8)
    wechat.menu = menu_as_stored(MENU)
    sim = simulator_for(config, bot_port, wechat=wechat)
    runner, url = await _serve(sim.create_app())
    config.wecom.api_base_url, config.wechat.api_base_url = url, url + "/mp"
    config.server.public_base_url = f"http://127.0.0.1:{free_port()}"  # nothing answers there yet
    yield Setup(config, sim, url)
    await runner.cleanup()


async def check(config: Config, capsys: pytest.CaptureFixture[str], to: str = "admin1") -> tuple[int, str]:
    code = await asyncio.to_thread(cmd_check, config, argparse.Namespace(to=to))
    return code, capsys.readouterr().out


def line(output: str, start: str, containing: str = "") -> str:
    """The one output line that starts with `start` (status and topic) [and contains `containing`]."""
    found = [row for row in output.splitlines() if row.startswith(start) and containing in row]
    assert len(found) == 1, f"{start!r} in:\n{output}"
    return found[0]


async def test_a_working_setup_exits_0_and_sends_the_admin_a_test_message(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK, out
    assert "CorpID wwtestcorp0000001 and the app's Secret are right" in line(out, "ok    wecom token")
    assert line(out, "ok    wecom trusted IP")
    assert "1 department(s)" in line(out, "ok    wecom visible range", "department(s)")
    assert "admin1 is in the visible range" in out
    assert "sent a test message to admin1" in line(out, "ok    wecom test message")
    [message] = setup.sim.bot_messages("admin1")
    assert "测试消息" in message.body["content"]
    assert "expects the decrypted echostr back within 1 s" in out and "our handler answered a signed echostr" in out
    assert "nothing answers at http://127.0.0.1:" in line(out, "warn  wecom callback")
    assert line(out, "ok    oa token") and "partnerbot's (7 buttons)" in line(out, "ok    oa menu")
    assert "WeChat URL verification works" in line(out, "ok    oa callback")
    assert "which WeCom, WeChat and customers cannot reach" in line(out, "warn  server public URL", "reach")
    assert "takes only 80 (http) or 443 (https)" in line(out, "warn  server public URL", "port")
    assert "FAIL" not in out
    assert out.splitlines()[-1].startswith("partnerbot check: ") and out.rstrip().endswith("ready for production")


async def test_wrong_corp_id(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.faults.apply("wrong_corp_id")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "CorpID wwtestcorp0000001 is no corp (40013): copy 企业ID from 我的企业 → 企业信息 into " \
           "PARTNERBOT_WECOM_CORP_ID" in line(out, "FAIL  wecom token")
    assert "wecom trusted IP" not in out  # nothing after a failed token is tried
    assert "NOT ready" in out.splitlines()[-1]


async def test_a_corp_id_that_is_not_the_corps(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.config.wecom.corp_id = "wwsomeoneelse0001"  # the simulator tells, as WeCom would
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA and "CorpID wwsomeoneelse0001 is no corp (40013)" in line(out, "FAIL  wecom token")


@pytest.mark.parametrize("errcode", [40001, 40091, 42001])
async def test_wrong_secret(setup: Setup, capsys, errcode: int) -> None:  # type: ignore[no-untyped-def]
    setup.sim.faults.refuse("gettoken", errcode, "invalid credential, hint: [x], from ip: 127.0.0.1")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert f"WeCom refused the Secret ({errcode} invalid credential): copy this app's own Secret " \
           "(应用管理 → 自建 → your app → Secret → 查看" in line(out, "FAIL  wecom token")
    assert "into PARTNERBOT_WECOM_SECRET" in out


async def test_a_secret_that_is_not_the_apps(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.config.wecom.secret = "not-the-secret"
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA and "WeCom refused the Secret (40001 " in line(out, "FAIL  wecom token")


async def test_ip_not_trusted(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.faults.apply("ip_not_trusted")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert line(out, "ok    wecom token")  # WeCom hands out tokens; it refuses the calls
    assert "WeCom refuses API calls from this server's IP 127.0.0.1 (60020): add it under 应用管理 → 自建 → " \
           "your app → 企业可信IP" in line(out, "FAIL  wecom trusted IP")
    assert "not tried: fix the line above first" in line(out, "skip  wecom app")
    assert not setup.sim.bot_messages("admin1")


async def test_nobody_in_the_visible_range(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.faults.apply("empty_visible_range")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "nobody is in the visible range (可见范围) of 'partnerbot'" in line(out, "FAIL  wecom visible range")
    assert "WeCom did not deliver the test message to admin1 (81013" in line(out, "FAIL  wecom test message")


async def test_the_admin_outside_the_visible_range(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.departments[5] = {"p1", "p2"}
    setup.sim.agent.set_range(users={"mkt1"}, departments={5})
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "visible to 1 member(s), 1 department(s)" in line(out, "ok    wecom visible range", "member(s)")
    assert "admin1 is not in the visible range" in line(out, "warn  wecom visible range")
    assert "check the userid (通讯录 → 成员 → 账号) and that they are in" in line(out, "FAIL  wecom test message")
    # Someone in range through their department: in range, and the message arrives.
    code, out = await check(setup.config, capsys, to="p2")
    assert code == EXIT_OK and "p2 is in the visible range" in out and setup.sim.bot_messages("p2")


async def test_message_refused(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.faults.apply("message_refused")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "WeCom did not deliver the test message to admin1 (81013 user & party & tag all invalid)" \
        in line(out, "FAIL  wecom test message")


async def test_an_unknown_userid_for_the_test_message(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = await check(setup.config, capsys, to="nobody")
    assert code == EXIT_BAD_DATA and "to nobody (81013" in line(out, "FAIL  wecom test message")


async def test_without_to_the_test_message_is_skipped(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = await check(setup.config, capsys, to="")
    assert code == EXIT_OK and "add --to YOUR_USERID" in line(out, "skip  wecom test message")


async def test_an_agent_id_of_another_app(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.config.wecom.agent_id = 1000099
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "AgentId 1000099 is not the app whose Secret is configured (301002)" in line(out, "FAIL  wecom app")


async def test_a_disabled_app(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.agent.closed = True
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA and "is disabled (已停用)" in line(out, "FAIL  wecom app")


async def test_missing_settings(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.config.wecom.secret = ""
    setup.config.wecom.encoding_aes_key = ""
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "[wecom] secret is not set: set PARTNERBOT_WECOM_SECRET" in line(out, "FAIL  wecom settings")
    assert "[wecom] encoding_aes_key is not set: set PARTNERBOT_WECOM_ENCODING_AES_KEY to the EncodingAESKey " \
           "of 应用管理 → 自建 → your app → 接收消息 → 设置API接收" in line(out, "FAIL  wecom callback")


async def test_callback_token_and_key_formats(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.config.wecom.token = "with_underscore-and-dash"
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK  # the console would not take it, but the bot can work with it
    assert "takes 1-32 letters or digits" in line(out, "warn  wecom callback", "[wecom] token")
    setup.config.wecom.encoding_aes_key = aes_key()[:42]  # the loader refuses this; the doctor says so too
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "must be 43 letters and digits (base64 of 32 bytes), it is 42 characters" in line(out, "FAIL  wecom callback")


async def test_network_failures(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    config = setup.config
    config.wecom.api_base_url = f"http://127.0.0.1:{free_port()}"
    code, out = await check(config, capsys)
    assert code == EXIT_BAD_DATA and "cannot connect to 127.0.0.1 (Connection refused)" in line(out, "FAIL  wecom token")
    config.wecom.api_base_url = setup.url.replace("http:", "https:")  # a server that does not speak TLS
    code, out = await check(config, capsys)
    assert code == EXIT_BAD_DATA and "TLS with 127.0.0.1 failed (ClientConnectorSSLError): check this server's " \
        "clock and CA certificates" in line(out, "FAIL  wecom token")
    config.wecom.api_base_url = setup.url
    setup.sim.api_available = False
    code, out = await check(config, capsys)
    assert code == EXIT_BAD_DATA
    assert "answered gettoken with HTTP 503, not the platform's JSON: is [wecom] api_base_url right " \
           "(https://qyapi.weixin.qq.com)?" in line(out, "FAIL  wecom token")

    async def never(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)  # far past the 0.3 s timeout
        return web.Response()

    slow = web.Application()
    slow.router.add_get("/cgi-bin/gettoken", never)
    runner, url = await _serve(slow)
    try:
        config.wecom.api_base_url, config.wecom.api_timeout_seconds = url, 0.3
        code, out = await check(config, capsys)
        assert code == EXIT_BAD_DATA and "did not answer gettoken within 0.3 s" in line(out, "FAIL  wecom token")
    finally:
        await runner.cleanup()


async def test_a_name_that_does_not_resolve(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.config.wecom.api_base_url = "http://qyapi.partnerbot-check.invalid"  # .invalid never resolves (RFC 2606)
    setup.config.wecom.api_timeout_seconds = 5
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "cannot resolve qyapi.partnerbot-check.invalid" in line(out, "FAIL  wecom token")


async def test_the_public_callback_url(stack: Stack, capsys) -> None:  # type: ignore[no-untyped-def]
    """The running bot answers WeCom's verification at public_base_url; one with another Token does not."""
    config = stack.config
    config.server.public_base_url = stack.bot_url
    code, out = await check(config, capsys, to="")
    assert code == EXIT_OK, out
    assert f"{stack.bot_url}/wecom/callback answers WeCom's URL verification (HTTP 200" in out
    config.wecom.token = "SomeOtherToken1"  # what the doctor is given, not what the server there runs with
    code, out = await check(config, capsys, to="")
    assert code == EXIT_BAD_DATA
    assert "answered WeCom's URL verification with HTTP 403 (bad signature): the server there runs with another " \
           "Token/EncodingAESKey/CorpID" in line(out, "FAIL  wecom callback")


async def test_official_account_secret_and_app_id(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.wechat.faults.apply("oa_wrong_secret")  # type: ignore[union-attr]
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "WeChat refused the AppSecret (40125 invalid appsecret): reset or copy 开发者密码(AppSecret) under " \
           "设置与开发 → 基本配置 into PARTNERBOT_WECHAT_SECRET" in line(out, "FAIL  oa token")
    assert line(out, "ok    wecom token")  # the WeCom half is fine
    setup.sim.wechat.faults.clear()  # type: ignore[union-attr]
    setup.config.wechat.app_id = "wxnotthisaccount1"
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA and "AppID wxnotthisaccount1 is not valid (40013)" in line(out, "FAIL  oa token")


async def test_official_account_ip_whitelist(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.wechat.faults.apply("oa_ip_whitelist")  # type: ignore[union-attr]
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "WeChat refuses this server's IP 127.0.0.1 (40164): add it under 设置与开发 → 基本配置 → IP白名单" \
        in line(out, "FAIL  oa IP whitelist")


async def test_official_account_menu(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    wechat = setup.sim.wechat
    assert wechat is not None
    wechat.faults.apply("oa_no_menu")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK  # followers can still type commands
    assert "no menu (46003): followers must type commands; run `partnerbot wechat menu`" in line(out, "warn  oa menu")
    wechat.menu = menu_as_stored({"button": [{"type": "view", "name": "官网", "url": "https://example.com"}]})
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK and "is not partnerbot's" in line(out, "warn  oa menu")
    wechat.faults.apply("oa_unverified")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA and "verified service account (认证服务号)" in line(out, "FAIL  oa menu")


async def test_without_an_official_account(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.config.wechat.app_id = ""
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK and "no Official Account configured" in line(out, "skip  official account")


async def test_faults_through_the_simulators_http_endpoint(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession(base_url=setup.url) as http:
        async with http.post("/simulator/faults", json={"fault": "ip_not_trusted"}) as response:
            assert response.status == 200
        async with http.post("/simulator/faults", json={"fault": "oa_ip_whitelist"}) as response:
            assert response.status == 200
        async with http.post("/simulator/faults", json={"fault": "no_such_fault"}) as response:
            assert response.status == 422 and "known: wrong_corp_id" in (await response.json())["error"]
        async with http.post("/simulator/faults", data=b"not json") as response:
            assert response.status == 400
        code, out = await check(setup.config, capsys)
        assert code == EXIT_BAD_DATA and "(60020)" in out and "(40164)" in out
        async with http.delete("/simulator/faults") as response:
            assert response.status == 200
        async with http.post("/simulator/faults", json={"api": "gettoken", "errcode": 40091}) as response:
            assert response.status == 200
        code, out = await check(setup.config, capsys)
        assert code == EXIT_BAD_DATA and "WeCom refused the Secret (40091" in out
        async with http.delete("/simulator/faults") as response:
            assert response.status == 200
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK, out


def _env(config: Config, tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    w, c = config.wecom, config.wechat
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERBOT_")}
    return env | {
        "PARTNERBOT_CONFIG": str(empty), "PARTNERBOT_DATABASE_URL": config.database.url,
        "PARTNERBOT_WECOM_CORP_ID": w.corp_id,
        "PARTNERBOT_WECOM_AGENT_ID": str(w.agent_id), "PARTNERBOT_WECOM_SECRET": w.secret,
        "PARTNERBOT_WECOM_TOKEN": w.token, "PARTNERBOT_WECOM_ENCODING_AES_KEY": w.encoding_aes_key,
        "PARTNERBOT_WECOM_API_BASE_URL": w.api_base_url, "PARTNERBOT_SERVER_PUBLIC_BASE_URL": config.server.public_base_url,
        "PARTNERBOT_WECHAT_APP_ID": c.app_id, "PARTNERBOT_WECHAT_SECRET": c.secret, "PARTNERBOT_WECHAT_TOKEN": c.token,
        "PARTNERBOT_WECHAT_ENCODING_AES_KEY": c.encoding_aes_key, "PARTNERBOT_WECHAT_API_BASE_URL": c.api_base_url}


async def _partnerbot(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_command_line(setup: Setup, tmp_path: Path) -> None:
    env = _env(setup.config, tmp_path)
    code, out, err = await _partnerbot(env, "check", "--to", "admin1")
    assert code == EXIT_OK, out + err
    assert out.rstrip().endswith("ready for production") and setup.sim.bot_messages("admin1")
    setup.sim.faults.apply("wrong_secret")
    code, out, _ = await _partnerbot(env, "check")
    assert code == EXIT_BAD_DATA and "WeCom refused the Secret (40001" in out
    # A malformed EncodingAESKey is refused when the configuration is read, like every command does.
    code, out, err = await _partnerbot(env | {"PARTNERBOT_WECOM_ENCODING_AES_KEY": "short"}, "check")
    assert code == EXIT_USAGE and "[wecom] encoding_aes_key must be the 43-character EncodingAESKey" in err


async def test_customer_contact(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    """Only `转发 N` needs it: what is missing is a warning, never a failure."""
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK
    assert "5 member(s) may use customer contact (客户联系), so `转发 N` works for them, admin1 among them" \
        in line(out, "ok    wecom customers")
    setup.sim.customers.no_permission.add("admin1")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK
    assert "admin1 may not use customer contact (客户联系)" in line(out, "warn  wecom customers")
    assert "客户联系 → 权限配置 → 使用范围" in out
    setup.sim.faults.apply("no_customer_contact")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK
    assert "the app may not call customer contact (48002 api forbidden)" in line(out, "warn  wecom customers")


async def test_database_and_redis(setup: Setup, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = await check(setup.config, capsys)
    assert code == EXIT_OK and "is at the newest migration" in line(out, "ok    database")
    assert "no Redis ([redis] url is empty)" in line(out, "skip  redis")
    missing = tmp_path / "nothing-here.db"
    setup.config.database.url = f"sqlite+aiosqlite:///{missing}"
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA and "does not exist yet: run `partnerbot migrate`" in line(out, "FAIL  database")
    assert not missing.exists()  # the check made no empty database
    missing.touch()
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA and "is at migration none, not " in line(out, "FAIL  database")
    setup.config.database.url = f"postgresql+asyncpg://partnerbot:secret@127.0.0.1:{free_port()}/partnerbot"
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert "cannot use the database postgresql+asyncpg://partnerbot:***@127.0.0.1:" in line(out, "FAIL  database")
    assert "secret" not in out
    if REDIS_URL:  # the real one where the tests have it (CI does)
        setup.config.redis.url = REDIS_URL
        code, out = await check(setup.config, capsys)
        assert line(out, "ok    redis")
    setup.config.redis.url = f"redis://127.0.0.1:{free_port()}/0"
    code, out = await check(setup.config, capsys)
    assert "Redis does not answer (ConnectionError)" in line(out, "FAIL  redis")


async def test_any_other_agent_get_error_is_quoted_with_wecoms_lookup_page(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    setup.sim.faults.refuse("agent/get", 48002, "api forbidden, hint: [1701], from ip: 127.0.0.1, more info at x")
    code, out = await check(setup.config, capsys)
    assert code == EXIT_BAD_DATA
    assert line(out, "FAIL  wecom app").endswith("WeCom refused agent/get for AgentId 1000002 (48002 api forbidden): "
                                                 "see https://open.work.weixin.qq.com/devtool/query?e=48002")
