"""The `partnerbot` command line (DESIGN §8). Operator mistakes are one line and exit code 2."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import make_url

from bot.cli_help import describe, version
from bot.config import Config, ConfigError, load_config

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        config = load_config(args.config)
        for warning in config.warnings:
            print(f"partnerbot: warning: {warning}", file=sys.stderr)
        from bot import logs

        logs.setup(config.log.level, config.log.format)
        return int(args.run(config, args))
    except ConfigError as err:
        print(f"partnerbot: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH",
                        help="configuration file (default: $PARTNERBOT_CONFIG, else ./config.toml)")
    parser = argparse.ArgumentParser(prog="partnerbot", description="WeCom bot for partner co-marketing")
    parser.add_argument("--version", action="version", version=f"partnerbot {version()}")
    sub = parser.add_subparsers(metavar="COMMAND")
    sub.add_parser("demo", parents=[common], help="run bot + WeCom simulator + sandbox on SQLite").set_defaults(run=cmd_demo)
    sub.add_parser("serve", parents=[common], help="run the production server").set_defaults(run=cmd_serve)
    sub.add_parser("migrate", parents=[common], help="apply database migrations").set_defaults(run=cmd_migrate)
    check = sub.add_parser("check", parents=[common],
                           help="try the WeCom app and Official Account for real and explain what is wrong")
    check.add_argument("--to", default="", metavar="USERID", help="send yourself (your WeCom userid) a test message")
    check.set_defaults(run=cmd_check)
    simulator = sub.add_parser("simulator", parents=[common], help="run the WeCom simulator alone")
    simulator.add_argument("--members", metavar="FILE.csv", help="members CSV to fill the simulated directory")
    simulator.set_defaults(run=cmd_simulator)
    members = sub.add_parser("members", help="manage members").add_subparsers(metavar="ACTION")
    member_import = members.add_parser("import", parents=[common], help="import members from CSV (upsert)")
    member_import.add_argument("file", metavar="FILE.csv")
    member_import.set_defaults(run=cmd_members_import)
    member_sync = members.add_parser("sync", parents=[common],
                                     help="add or update members from a WeCom department (user/list)")
    member_sync.add_argument("--department", type=int, required=True, metavar="ID", help="WeCom department id")
    member_sync.add_argument("--partner", default="", metavar="NAME",
                             help="the partner they belong to (required with --role partner, the default)")
    member_sync.add_argument("--role", default="partner", choices=("partner", "marketer", "admin"))
    member_sync.set_defaults(run=cmd_members_sync)
    wechat = sub.add_parser("wechat", help="the WeChat Official Account").add_subparsers(metavar="ACTION")
    wechat.add_parser("menu", parents=[common], help="install the account's custom menu (tasks, pool, my poster…)") \
        .set_defaults(run=cmd_wechat_menu)
    leads = sub.add_parser("leads", help="manage leads").add_subparsers(metavar="ACTION")
    lead_import = leads.add_parser("import", parents=[common], help="import leads from CSV into their pools")
    lead_import.add_argument("file", metavar="FILE.csv")
    lead_import.set_defaults(run=cmd_leads_import)
    backup = sub.add_parser("backup", parents=[common], help="copy the database while the bot runs",
                            description="SQLite: a consistent copy through the online backup API. PostgreSQL: "
                                        "pg_dump --format=custom (needs pg_dump). Restore: docs/production.md.")
    backup.add_argument("file", metavar="FILE", help="where the backup goes (a new file)")
    backup.set_defaults(run=cmd_backup)
    describe(parser)
    return parser


def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    from bot.backup import backup

    print(backup(config.database.url, Path(args.file)))
    return EXIT_OK


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def cmd_migrate(config: Config, _args: argparse.Namespace) -> int:
    from store.db import head_revision, migrate

    migrate(config.database.url)
    rebuilt = asyncio.run(_fill_click_daily(config))
    if rebuilt:
        print(f"counted the stored clicks into {rebuilt} daily rows")
    print(f"database {_safe_url(config.database.url)} is at migration {head_revision()}")
    return EXIT_OK


async def _fill_click_daily(config: Config) -> int:
    """Clicks stored before the daily counts existed get counted once, in the deployment's time zone."""
    from store.db import Database
    from store.stats import fill_click_daily

    db = Database(config.database.url)
    try:
        async with db.session() as session:
            return await fill_click_daily(session, config.server.timezone)
    finally:
        await db.dispose()


async def _require_current_schema(config: Config) -> None:
    from store.db import Database, current_revision, head_revision

    db = Database(config.database.url)
    try:
        current = await current_revision(db)
    except Exception as err:
        raise ConfigError(f"{config.source}: [database] url: cannot connect ({type(err).__name__}: {err})") from None
    finally:
        await db.dispose()
    if current != head_revision():
        raise ConfigError(f"database {_safe_url(config.database.url)} is at migration {current or 'none'}, "
                          f"not {head_revision()}: run `partnerbot migrate` first")


def _read_csv(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it as UTF-8 text ({type(err).__name__})") from None


def _rejected(file: str, errors: list[str]) -> int:
    for error in errors:
        print(f"{file}: {error}", file=sys.stderr)
    print(f"{file}: nothing imported ({len(errors)} bad row(s)); fix them and run again", file=sys.stderr)
    return EXIT_BAD_DATA


def cmd_members_import(config: Config, args: argparse.Namespace) -> int:
    from store.members import CsvRejected, import_members, parse_members_csv

    try:
        rows = parse_members_csv(_read_csv(args.file))
    except CsvRejected as rejected:
        return _rejected(args.file, rejected.errors)

    async def run() -> str:
        from store.db import Database

        await _require_current_schema(config)
        db = Database(config.database.url)
        try:
            async with db.session() as session:
                result = await import_members(session, rows)
        finally:
            await db.dispose()
        partners = f", new partners: {', '.join(result.partners_created)}" if result.partners_created else ""
        return f"imported {len(rows)} members ({result.created} new, {result.updated} updated){partners}"

    print(asyncio.run(run()))
    return EXIT_OK


def cmd_members_sync(config: Config, args: argparse.Namespace) -> int:
    """Upsert a WeCom department's active members like the CSV import; existing members keep their
    region and industries. Disabled or departed people are listed, not imported."""
    import aiohttp

    from bot.channels.wecom_api import WeComClient, WeComError, WeComUnavailable
    from store.members import MemberRow, import_members
    from store.redis import SharedKeys

    config.require_wecom()
    if args.role == "partner" and not args.partner.strip():
        raise ConfigError("members sync: partner staff need --partner NAME")

    async def run() -> int:
        from store.db import Database
        from store.members import members_by_userids

        await _require_current_schema(config)
        async with aiohttp.ClientSession() as http:
            client = WeComClient(config.wecom, http, SharedKeys(None, config.redis.key_prefix))
            try:
                users = await client.list_users(args.department)
            except (WeComError, WeComUnavailable, aiohttp.ClientError) as err:
                print(f"members sync: WeCom refused user/list for department {args.department}: {err}", file=sys.stderr)
                return EXIT_BAD_DATA
        active = [u for u in users if u.get("status", 1) == 1 and u.get("userid")]
        db = Database(config.database.url)
        try:
            async with db.session() as session:
                existing = await members_by_userids(session, [u["userid"] for u in active])
                rows = [MemberRow(0, u["userid"][:64], (u.get("name") or u["userid"])[:64], args.role,
                                  args.partner.strip() if args.role == "partner" else "",
                                  existing[u["userid"]].region if u["userid"] in existing else "",
                                  tuple(existing[u["userid"]].industries) if u["userid"] in existing else (), None)
                        for u in active]
                result = await import_members(session, rows)
        finally:
            await db.dispose()
        for user in users:
            if user not in active:
                print(f"skipped {user.get('userid', '?')}: not active in WeCom (status {user.get('status')})")
        print(f"synced {len(rows)} members from department {args.department} "
              f"({result.created} new, {result.updated} updated)")
        return EXIT_OK

    return asyncio.run(run())


def cmd_leads_import(config: Config, args: argparse.Namespace) -> int:
    from store.db import Database
    from store.leads import import_leads, parse_leads_csv
    from store.members import CsvRejected
    from store.partners import partner_names as stored_partner_names
    from store.pool_rules import rule_book

    text = _read_csv(args.file)

    async def run() -> int:
        await _require_current_schema(config)
        db = Database(config.database.url)
        try:
            async with db.session() as session:
                partner_names = await stored_partner_names(session)
            try:
                rows = parse_leads_csv(text, partner_names)
            except CsvRejected as rejected:
                return _rejected(args.file, rejected.errors)
            async with db.session() as session:
                created, skipped = await import_leads(session, rows, book=await rule_book(session, config.pool_rules))
        finally:
            await db.dispose()
        for line in skipped:
            print(f"{args.file}: skipped {line}")
        print(f"imported {len(created)} leads ({len(skipped)} duplicate(s) skipped)")
        return EXIT_OK

    return asyncio.run(run())


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    """Exit 0 only when everything a production start needs works (warnings allowed)."""
    import logging

    from bot.doctor import run_check

    # Its own lines say what happened; "fetched a new access token" would only be noise between them.
    tokens = logging.getLogger("bot.channels.api_client")
    level = tokens.level
    tokens.setLevel(logging.WARNING)
    try:
        doctor = asyncio.run(run_check(config, args.to.strip(), lambda finding: print(finding.line(), flush=True)))
    finally:
        tokens.setLevel(level)
    print(doctor.summary())
    return EXIT_OK if doctor.ready else EXIT_BAD_DATA


def cmd_serve(config: Config, _args: argparse.Namespace) -> int:
    from bot.app import create_app

    config.require_wecom()
    asyncio.run(_require_current_schema(config))
    app = create_app(config)
    return _run([(app, config.server.host, config.server.port)],
                lambda: print(f"partnerbot serving on http://{config.server.host}:{config.server.port} "
                              f"(callback path /wecom/callback)", flush=True))


def _simulator_for(config: Config, directory: dict[str, str],  # type: ignore[no-untyped-def]
                   followers: dict[str, str] | None = None):
    """The WeCom simulator, with the Official Account beside it when [wechat] app_id is set."""
    from bot.simulator import WeChatSimulator, WeComSimulator

    w, c, s = config.wecom, config.wechat, config.simulator
    wechat = None
    if c.app_id:
        wechat = WeChatSimulator(app_id=c.app_id, secret=c.secret, token=c.token,
                                 encoding_aes_key=c.encoding_aes_key, callback_url=s.wechat_callback_url,
                                 mode=s.wechat_mode, original_id=s.wechat_original_id,
                                 callback_timeout=s.callback_timeout_seconds, followers=followers)
    return WeComSimulator(corp_id=w.corp_id, agent_id=w.agent_id, secret=w.secret, token=w.token,
                          encoding_aes_key=w.encoding_aes_key, callback_url=s.callback_url,
                          callback_timeout=s.callback_timeout_seconds, callback_retries=s.callback_retries,
                          directory=directory, wechat=wechat)


def cmd_simulator(config: Config, args: argparse.Namespace) -> int:
    from store.members import CsvRejected, parse_members_csv

    config.require_wecom()
    directory: dict[str, str] = {}
    if args.members:
        try:
            directory = {row.userid: row.name for row in parse_members_csv(_read_csv(args.members))}
        except CsvRejected as rejected:
            raise ConfigError(f"{args.members}: {rejected.errors[0]}") from None
    # Standalone, the Official Account starts without followers: people follow from the sandbox page.
    simulator = _simulator_for(config, directory)
    s = config.simulator

    def banner() -> None:
        print(f"WeCom simulator on http://{s.host}:{s.port}/ → callbacks to {s.callback_url}", flush=True)
        if simulator.wechat is not None:
            print(f"WeChat Official Account ({s.wechat_mode} mode) API on http://{s.host}:{s.port}/mp "
                  f"→ callbacks to {s.wechat_callback_url}", flush=True)

    return _run([(simulator.create_app(), s.host, s.port)], banner)


def cmd_demo(config: Config, _args: argparse.Namespace) -> int:
    from bot.app import create_app
    from bot.demo import (DEMO_CUSTOMERS, DEMO_NO_CUSTOMER_PERMISSION, demo_config, demo_directory, demo_followers,
                          seed_demo)
    from store.db import Database, migrate

    config = demo_config(config)
    migrate(config.database.url)

    async def seed() -> None:
        db = Database(config.database.url)
        try:
            async with db.session() as session:
                await seed_demo(session, config.server.timezone)
        finally:
            await db.dispose()

    asyncio.run(seed())
    simulator = _simulator_for(config, demo_directory(), demo_followers())
    for userid, count in DEMO_CUSTOMERS.items():
        simulator.customers.give(userid, count)
    simulator.customers.no_permission.update(DEMO_NO_CUSTOMER_PERMISSION)
    background: set[asyncio.Task[None]] = set()

    async def install_demo_menu() -> None:
        try:
            await install_menu(config)
        except Exception as err:  # the demo still works without it: commands can be typed
            print(f"the demo account's menu was not installed: {err}", flush=True)
    s = config.simulator

    def banner() -> None:
        # The demo account gets its menu like a real one: menu/create over HTTP, once both are up.
        background.add(asyncio.get_running_loop().create_task(install_demo_menu()))
        print(f"partnerbot demo is running on {_safe_url(config.database.url)}\n"
              f"  open the sandbox: http://{s.host}:{s.port}/\n"
              f"  pick a member and type  help  or  帮助  (Ctrl+C stops)", flush=True)

    return _run([(create_app(config), config.server.host, config.server.port),
                 (simulator.create_app(), s.host, s.port)], banner)


async def install_menu(config: Config) -> None:
    """menu/create with handlers/menu.MENU (it replaces the account's current menu)."""
    import aiohttp

    from bot.channels.wechat_api import WeChatClient
    from handlers.menu import MENU
    from store.redis import SharedKeys

    async with aiohttp.ClientSession() as http:
        await WeChatClient(config.wechat, http, SharedKeys(None, config.redis.key_prefix)).create_menu(MENU)


def cmd_wechat_menu(config: Config, _args: argparse.Namespace) -> int:
    from bot.channels.api_client import ApiError, ApiUnavailable
    from handlers.menu import menu_commands

    if not config.wechat.enabled or not config.wechat.secret:
        raise ConfigError("wechat menu: set [wechat] app_id and secret (PARTNERBOT_WECHAT_APP_ID / _SECRET)")
    try:
        asyncio.run(install_menu(config))
    except (ApiError, ApiUnavailable) as err:
        print(f"wechat menu: WeChat refused the menu: {err}", file=sys.stderr)
        return EXIT_BAD_DATA
    print(f"installed the menu; its buttons run: {', '.join(menu_commands())}")
    return EXIT_OK


def _run(apps: list[tuple[web.Application, str, int]], banner: Callable[[], None]) -> int:
    async def serve() -> None:
        runners: list[web.AppRunner] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            for app, host, port in apps:
                runner = web.AppRunner(app, handle_signals=False, access_log=None)
                await runner.setup()
                runners.append(runner)
                try:
                    await web.TCPSite(runner, host, port).start()
                except OSError as err:
                    raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror}): "
                                      "choose another port in the config or its environment variable") from None
            banner()
            await stop.wait()
        finally:
            for runner in reversed(runners):
                await runner.cleanup()

    asyncio.run(serve())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
