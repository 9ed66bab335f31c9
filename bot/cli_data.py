"""The `partnerbot` commands that bring people and leads in: CSV imports and the WeCom directory
sync, with the checks every data command shares (current schema, a password-free database address)."""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.config import Config, ConfigError

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE = 0, 1, 2


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def require_current_schema(config: Config) -> None:
    from store.db import Database, current_revision, head_revision

    db = Database(config.database.url)
    try:
        current = await current_revision(db)
    except Exception as err:
        raise ConfigError(f"{config.source}: [database] url: cannot connect ({type(err).__name__}: {err})") from None
    finally:
        await db.dispose()
    if current != head_revision():
        raise ConfigError(f"database {safe_url(config.database.url)} is at migration {current or 'none'}, "
                          f"not {head_revision()}: run `partnerbot migrate` first")


def read_csv(path: str) -> str:
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
        rows = parse_members_csv(read_csv(args.file))
    except CsvRejected as rejected:
        return _rejected(args.file, rejected.errors)

    async def run() -> str:
        from store.db import Database

        await require_current_schema(config)
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

        await require_current_schema(config)
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

    text = read_csv(args.file)

    async def run() -> int:
        await require_current_schema(config)
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
