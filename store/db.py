"""The async database: one engine per process, one session per unit of work."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Values per `IN (...)` list or terms per OR: SQLite allows 999 bound variables per statement before
# 3.32 and an expression at most 1,000 deep (an OR of 12,000 terms fails), asyncpg 32,767 arguments.
IN_CHUNK = 500
T = TypeVar("T")


def chunked(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


# Below WARNING these print statements with their parameters (aiosqlite at DEBUG: every phone, invite
# and binding code) or result rows (SQLAlchemy's engine at INFO/DEBUG), whatever [log] level says.
_STATEMENT_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine.Engine", "sqlalchemy.pool")


def _statements_only_as_warnings(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def keep_sql_out_of_logs() -> None:
    """Driver and engine loggers at WARNING, and a filter that holds even if someone lowers them."""
    for name in _STATEMENT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.WARNING))
        if _statements_only_as_warnings not in logger.filters:
            logger.addFilter(_statements_only_as_warnings)


def create_engine(url: str, statement_timeout: float | None = None) -> AsyncEngine:
    """`statement_timeout` (PostgreSQL): no statement waits longer, e.g. on a connection that a
    silent network partition froze. None for the command line (migrations may run long)."""
    keep_sql_out_of_logs()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers work beside the single writer; the busy timeout makes a second
            # writer (another instance or a CLI import) wait instead of failing at once.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip per unit of work. A connection broken by a database restart
    # fails its unit of work, which is retried (callbacks answer 503 and WeCom resends; inbox and
    # outbox rows stay claimable), and the pool then replaces it.
    # hide_parameters: error messages (and so logs) never carry values such as phone numbers.
    # A short pool timeout makes a starved callback answer 503 (WeCom retries) rather than hang.
    # A connect timeout (asyncpg waits 60 s by default) so that a database that is unreachable but
    # not refusing (a network partition) fails a unit of work in seconds instead of hanging it.
    # No JIT: PostgreSQL compiles a plan whose cost passes jit_above_cost, which for a month's `统计`
    # at 100,000 leads spent 40-220 ms compiling a query that runs in ~80 ms; no query here runs
    # long enough to win it back.
    connect_args: dict[str, object] = {"timeout": 3, "server_settings": {"jit": "off"}}
    if statement_timeout:
        connect_args["command_timeout"] = statement_timeout
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_timeout=3, pool_recycle=1800,
                               hide_parameters=True, connect_args=connect_args)


class _UnitOfWork(Session):
    """A session that notes when it first reaches the database (used_database)."""


@event.listens_for(_UnitOfWork, "after_begin")
def _note_database_used(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info["used_database"] = True


def used_database(session: AsyncSession) -> bool:
    """Whether a unit of work has read or written anything yet, or holds changes that it will write."""
    return bool(session.info.get("used_database") or session.new or session.dirty or session.deleted)


class Database:
    def __init__(self, url: str, statement_timeout: float | None = None) -> None:
        self.url = url
        self.engine = create_engine(url, statement_timeout)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, sync_session_class=_UnitOfWork)
        # The same pool; a connection is switched to autocommit while it is out (no round trip).
        self.autocommit_sessions = async_sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                                                      expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends normally, rolls back otherwise."""
        async with self.sessions() as session:
            async with session.begin():
                yield session

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[AsyncSession]:
        """A unit of work of one statement, which is atomic by itself: run in autocommit, it costs one
        round trip instead of three (BEGIN, the statement, COMMIT). Never for two statements that
        must hold together."""
        async with self.autocommit_sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations (synchronous: run it before the event loop starts, or in a thread)."""
    from alembic import command

    create_engine(url)  # makes the SQLite folder if needed
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


async def current_revision(db: Database) -> str | None:
    """The migration the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    async with db.engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def ping(session: AsyncSession) -> None:
    """Raises if the database does not answer (the health check)."""
    from sqlalchemy import text

    await session.execute(text("SELECT 1"))


def dialect_insert(session: AsyncSession) -> Any:
    """INSERT with the session's dialect's ON CONFLICT (PostgreSQL's or SQLite's, which both speak)."""
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert


def leave_for_after_commit(session: AsyncSession, what: str) -> None:
    """Note that this unit of work recorded something another system must be told once it commits
    (a `forward N`), so whoever committed it acts on it without asking the database every time."""
    session.info.setdefault("after_commit", set()).add(what)


def left_for_after_commit(session: AsyncSession) -> set[str]:
    return set(session.info.get("after_commit", ()))
