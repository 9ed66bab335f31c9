"""`partnerbot backup FILE`: a consistent copy of the database while the bot runs. SQLite through its
online backup API (one read snapshot, WAL included); PostgreSQL through pg_dump's custom format,
with the password in the environment (never on a command line other users can read)."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from bot.config import ConfigError

PG_DUMP_TIMEOUT_SECONDS = 6 * 3600


def backup(database_url: str, target: Path) -> str:
    """Write the backup to `target` (refusing to overwrite one) and say in one line what was written."""
    if target.exists():
        raise ConfigError(f"{target}: already exists; choose a new file name (backups are never overwritten)")
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent}: no such folder")
    url = make_url(database_url)
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite(url, target)
        if url.get_backend_name() == "postgresql":
            return _postgres(url, target)
    except (sqlite3.Error, OSError) as err:  # locked for too long, disk full, no permission: one line
        raise ConfigError(f"backup: nothing written to {target} ({type(err).__name__}: {err})") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"backup: pg_dump took longer than {PG_DUMP_TIMEOUT_SECONDS // 3600} h; "
                          f"nothing written to {target}") from None
    raise ConfigError(f"[database] url: cannot back up a {url.get_backend_name()} database")


def _sqlite(url: URL, target: Path) -> str:
    source = Path(url.database or "")
    if not url.database or url.database == ":memory:" or not source.is_file():
        raise ConfigError(f"[database] url: {source} is not a SQLite database file")
    # Written beside the target and renamed: a backup cut short never looks like a whole one.
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=".partial")
    os.close(fd)
    try:
        with closing(sqlite3.connect(source, timeout=30)) as live, closing(sqlite3.connect(partial)) as copy:
            live.backup(copy)  # all pages in one step: one consistent snapshot
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            revision = _revision(copy)
        if verdict != "ok":
            raise ConfigError(f"{target}: the copy failed its integrity check ({verdict}); nothing written")
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return f"backed up {source} to {target} ({target.stat().st_size:,} bytes, migration {revision})"


def _revision(connection: sqlite3.Connection) -> str:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return "none"
    return row[0] if row else "none"


def _postgres(url: URL, target: Path) -> str:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise ConfigError("backup: pg_dump is not installed here; install the PostgreSQL client of your server's "
                          "version, or run `pg_dump --format=custom` where it is (docs/production.md, Backup)")
    # URL.set ignores a None password: build the address without it.
    libpq = URL.create("postgresql", url.username, None, url.host, url.port, url.database, _libpq_query(url.query)) \
        .render_as_string(hide_password=False)
    env = {**os.environ, **({"PGPASSWORD": str(url.password)} if url.password else {})}
    partial = target.with_name(f".{target.name}.partial")
    try:
        done = subprocess.run([pg_dump, "--format=custom", "--no-owner", f"--file={partial}", f"--dbname={libpq}"],
                              env=env, capture_output=True, text=True, timeout=PG_DUMP_TIMEOUT_SECONDS)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ConfigError(f"backup: pg_dump failed: {last}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    shown = url.set(drivername="postgresql").render_as_string(hide_password=True)
    return f"backed up {shown} to {target} ({target.stat().st_size:,} bytes, pg_dump custom format: pg_restore reads it)"


# asyncpg's ssl=<mode> is libpq's sslmode; its other options (statement caches, timeouts) mean
# nothing to pg_dump, which refuses an address with a parameter it does not know.
_LIBPQ_KEYS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "options", "target_session_attrs",
               "connect_timeout", "host", "port"}


def _libpq_query(query: dict) -> dict:  # type: ignore[type-arg]
    kept = {key: value for key, value in query.items() if key in _LIBPQ_KEYS}
    if "ssl" in query and "sslmode" not in kept:
        kept["sslmode"] = query["ssl"]
    return kept
