"""`partnerbot backup`: a live SQLite database (the bot's connection open, a write in flight) copies
to a file that opens with the committed rows; PostgreSQL goes through pg_dump and restores with
pg_restore; an existing file is never overwritten."""
from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bot.cli import main
from store.db import Database, head_revision
from store.models import Member
from tests.conftest import _drop_postgres_database, _new_postgres_database, seed


def config_for(folder: Path, url: str) -> Path:
    path = folder / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    return path


async def userids(url: str) -> list[str]:
    db = Database(url)
    try:
        async with db.session() as session:
            return sorted(await session.scalars(select(Member.userid)))
    finally:
        await db.dispose()


async def test_a_live_sqlite_database_copies_with_its_rows(sqlite_url: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    await seed(sqlite_url)
    committed = await userids(sqlite_url)
    assert committed  # the copy must have something to show
    live = Database(sqlite_url)
    try:
        async with live.session() as session:  # the bot is running: a connection open, a write in flight
            await session.execute(text("UPDATE members SET name = 'not committed' WHERE userid = 'p1'"))
            target = tmp_path / "backup.db"
            code = await asyncio.to_thread(main, ["backup", str(target), "--config", str(config_for(tmp_path, sqlite_url))])
            await session.rollback()
    finally:
        await live.dispose()
    assert code == 0
    assert f"migration {head_revision()}" in capsys.readouterr().out
    copy_url = f"sqlite+aiosqlite:///{target}"
    assert await userids(copy_url) == committed
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT name FROM members WHERE userid = 'p1'").fetchone()[0] != "not committed"
    # Restore is a copy back while the bot is stopped; the copy is a database the bot can run on.
    assert await asyncio.to_thread(main, ["migrate", "--config", str(config_for(tmp_path, copy_url))]) == 0


def test_a_backup_never_overwrites(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "backup.db"
    target.write_bytes(b"yesterday's backup")
    assert main(["backup", str(target), "--config", str(config_for(tmp_path, sqlite_url))]) == 2
    assert "already exists" in capsys.readouterr().err
    assert target.read_bytes() == b"yesterday's backup"
    assert main(["backup", str(tmp_path / "nowhere" / "b.db"), "--config", str(config_for(tmp_path, sqlite_url))]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_missing_sqlite_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'absent.db'}"
    assert main(["backup", str(tmp_path / "b.db"), "--config", str(config_for(tmp_path, url))]) == 2
    assert "is not a SQLite database file" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
                    reason="needs the PostgreSQL client tools")
async def test_postgres_backs_up_with_pg_dump_and_restores(postgres_url: str, tmp_path: Path) -> None:
    await seed(postgres_url)
    target = tmp_path / "backup.dump"
    code = await asyncio.to_thread(main, ["backup", str(target), "--config", str(config_for(tmp_path, postgres_url))])
    assert code == 0
    name, restored_url = await _new_postgres_database()
    try:
        libpq = restored_url.replace("postgresql+asyncpg", "postgresql")
        done = subprocess.run(["pg_restore", "--no-owner", f"--dbname={libpq}", str(target)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert await userids(restored_url) == await userids(postgres_url)
    finally:
        await _drop_postgres_database(name)



def test_the_postgres_password_goes_in_the_environment_not_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import bot.backup

    seen = {}

    def pg_dump(command: list[str], env: dict[str, str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        seen["command"], seen["password"] = command, env.get("PGPASSWORD")
        Path(next(a for a in command if a.startswith("--file=")).removeprefix("--file=")).write_bytes(b"PGDMP")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(bot.backup.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(bot.backup.subprocess, "run", pg_dump)
    url = "postgresql+asyncpg://partnerbot:s3cret-pw@db.internal:5432/partnerbot"
    target = tmp_path / "b.dump"
    assert main(["backup", str(target), "--config", str(config_for(tmp_path, url))]) == 0
    assert seen["password"] == "s3cret-pw"
    assert not any("s3cret-pw" in word for word in seen["command"])
    assert "--dbname=postgresql://partnerbot@db.internal:5432/partnerbot" in seen["command"]
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out and target.read_bytes() == b"PGDMP"

    monkeypatch.setattr(bot.backup.shutil, "which", lambda name: None)
    assert main(["backup", str(tmp_path / "c.dump"), "--config", str(config_for(tmp_path, url))]) == 2
    assert "pg_dump is not installed here" in capsys.readouterr().err


def test_a_backup_that_cannot_be_written_is_one_line(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import bot.backup

    def full_disk(*_args: object, **_kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bot.backup.tempfile, "mkstemp", full_disk)
    target = tmp_path / "b.db"
    assert main(["backup", str(target), "--config", str(config_for(tmp_path, sqlite_url))]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err and "No space left on device" in err and "Traceback" not in err
    assert not target.exists()


def test_asyncpg_options_become_what_pg_dump_understands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.backup

    seen = {}

    def pg_dump(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        seen["command"] = command
        Path(next(a for a in command if a.startswith("--file=")).removeprefix("--file=")).write_bytes(b"PGDMP")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(bot.backup.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(bot.backup.subprocess, "run", pg_dump)
    url = "postgresql+asyncpg://partnerbot@db.internal/partnerbot?ssl=require&prepared_statement_cache_size=0"
    assert main(["backup", str(tmp_path / "b.dump"), "--config", str(config_for(tmp_path, url))]) == 0
    assert "--dbname=postgresql://partnerbot@db.internal/partnerbot?sslmode=require" in seen["command"]
