"""Store behaviour on SQLite and PostgreSQL alike: schema, inbox/outbox claims, member import."""
import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from store import inbox, outbox
from store.db import Database, current_revision, head_revision, migrate
from store.members import CsvRejected, import_members, parse_members_csv
from store.models import Base, Member, Partner

HEADER = "userid,name,role,partner,region,industries\n"


async def test_migrations_produce_exactly_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert await current_revision(db) == head_revision()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
        assert diff == []
    finally:
        await db.dispose()


async def test_inbox_deduplicates_and_only_one_worker_claims(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.session() as s:
            first = await inbox.add(s, channel="wecom", dedupe_key="k1", user_id="u", payload={"a": 1})
        async with db.session() as s:
            again = await inbox.add(s, channel="wecom", dedupe_key="k1", user_id="u", payload={"a": 2})
        assert first is not None and again is None

        async def try_claim() -> inbox.Claim | None:
            async with db.session() as s:
                return await inbox.claim(s, first, timedelta(seconds=30))

        claims = await asyncio.gather(*(try_claim() for _ in range(8)))
        winners = [c for c in claims if c is not None]
        assert len(winners) == 1 and winners[0].payload == {"a": 1}
        # A lease that ran out lets another worker take over; the first can no longer finish.
        takeover = None
        async with db.session() as s:
            takeover = await inbox.claim(s, first, timedelta(seconds=-1))
        assert takeover is not None and takeover.attempts == 2
        async with db.session() as s:
            assert await inbox.finish(s, winners[0], "done") is False
        async with db.session() as s:
            assert await inbox.finish(s, takeover, "done") is True
        async with db.session() as s:
            assert await inbox.claimable_ids(s, timedelta(seconds=30)) == []
    finally:
        await db.dispose()


async def test_outbox_batch_claims_never_overlap_and_retries_wait(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.session() as s:
            for i in range(60):
                await outbox.add(s, channel="wecom", recipient=f"u{i}", payload={"kind": "text", "content": "x"})

        async def claim_some() -> list[outbox.Claim]:
            async with db.session() as s:
                return await outbox.claim_due(s, timedelta(seconds=30), 10)

        batches = await asyncio.gather(*(claim_some() for _ in range(8)))
        claimed = [c for batch in batches for c in batch]
        ids = [c.id for c in claimed]
        assert len(ids) == len(set(ids)) == 60  # every row claimed, none twice
        first, second = claimed[0], claimed[1]
        from store.models import utcnow
        async with db.session() as s:
            await outbox.mark_failed(s, first, "busy", utcnow() + timedelta(hours=1), may_have_been_delivered=False)
        assert await claim_some() == []  # the retry is not due yet; the rest are claimed
        async with db.session() as s:
            await outbox.defer(s, second, utcnow() - timedelta(seconds=1))
        [again] = await claim_some()
        assert (again.id, again.attempts) == (second.id, 1)  # a deferral is not an attempt
    finally:
        await db.dispose()


def test_csv_validation_reports_every_bad_row_by_line() -> None:
    text = HEADER + (
        "u1,张伟,partner,星河科技,华东,制造;零售\n"
        "bad id!,Name,partner,P,,\n"
        "u3,,boss,,,\n"
        "u1,Again,admin,,,\n"
        "u5,No Partner,partner,,,\n"
        "u6,Short,admin\n"
    )
    with pytest.raises(CsvRejected) as rejected:
        parse_members_csv(text)
    errors = rejected.value.errors
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "userid 'bad id!'" in errors[0]
    assert "name must be" in errors[1] and "role 'boss'" in errors[1]
    assert "already on line 2" in errors[2]
    assert "partner is required" in errors[3]
    assert "expected 6 fields" in errors[4]


@pytest.mark.parametrize("text, message", [
    ("", "the header must be"),
    ("id,name\n1,x\n", "the header must be"),
    (HEADER, "no members"),
])
def test_csv_structure_errors(text: str, message: str) -> None:
    with pytest.raises(CsvRejected) as rejected:
        parse_members_csv(text)
    assert message in rejected.value.errors[0]


def test_csv_accepts_excel_bom_and_any_column_order() -> None:
    rows = parse_members_csv("\ufeffname,userid,role,partner,region,industries\r\nLi,li,ADMIN,,,\r\n")
    assert (rows[0].userid, rows[0].role) == ("li", "admin")


async def test_import_upserts_by_userid(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.session() as s:
            result = await import_members(s, parse_members_csv(HEADER + "u1,张伟,partner,星河科技,华东,制造;零售\n"
                                                                "u2,Ann,marketer,,,\n"))
        assert (result.created, result.updated, result.partners_created) == (2, 0, ["星河科技"])
        async with db.session() as s:
            result = await import_members(s, parse_members_csv(HEADER + "u1,张伟伟,partner,蓝海渠道,华南,金融\n"))
        assert (result.created, result.updated, result.partners_created) == (0, 1, ["蓝海渠道"])
        async with db.session() as s:
            member = await s.scalar(select(Member).where(Member.userid == "u1"))
            assert (member.name, member.partner.name, member.region, member.industries) == ("张伟伟", "蓝海渠道", "华南", ["金融"])
            assert await s.scalar(select(func.count()).select_from(Member)) == 2
    finally:
        await db.dispose()


async def test_cli_import_is_all_or_nothing(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n')
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "u1,Ann,admin,,,\nu2,Bob,partner,Acme,North,a;b\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "u3,Cid,partner,Acme,,\nu4,Dee,wizard,,,\n", encoding="utf-8")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot", *args, "--config", str(config)],
                              capture_output=True, text=True, timeout=120)

    result = cli("members", "import", str(bad))
    assert result.returncode == 1
    assert f"{bad}: line 3: role 'wizard'" in result.stderr and "nothing imported" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("members", "import", str(good))
    assert result.returncode == 0, result.stderr
    assert "imported 2 members (2 new, 0 updated), new partners: Acme" in result.stdout
    result = cli("members", "import", str(good))
    assert "(0 new, 2 updated)" in result.stdout
    assert cli("members", "import", str(tmp_path / "missing.csv")).returncode == 2

    db = Database(database_url)
    try:
        async with db.session() as s:
            assert sorted(await s.scalars(select(Member.userid))) == ["u1", "u2"]  # u3 never got in
            assert list(await s.scalars(select(Partner.name))) == ["Acme"]
    finally:
        await db.dispose()


def test_migrate_command_on_a_new_sqlite_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/sub/new.db"\n')
    result = subprocess.run([sys.executable, "-m", "bot", "migrate", "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"is at migration {head_revision()}" in result.stdout
    assert (tmp_path / "sub" / "new.db").exists()


async def test_every_migration_goes_down_and_up_again(empty_database_url: str) -> None:
    """Each migration's downgrade runs (a release can be rolled back) and the schema comes back whole."""
    from alembic import command

    from store.db import alembic_config

    await asyncio.to_thread(migrate, empty_database_url)
    await asyncio.to_thread(command.downgrade, alembic_config(empty_database_url), "base")
    await asyncio.to_thread(migrate, empty_database_url)
    db = Database(empty_database_url)
    try:
        assert await current_revision(db) == head_revision()
    finally:
        await db.dispose()
