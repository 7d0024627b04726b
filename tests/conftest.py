"""Fixtures: the two deployment shapes, real servers, and a running Switchboard per test.

Every test that takes `stack` runs twice: on the embedded defaults (SQLite + the SQLite
bus) and on the production shape (a fresh PostgreSQL database + a private Redis server).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from config import Settings, load_settings
from inbox.migrate import upgrade
from tests.fakes.hubspot_server import FakeHubSpot
from tests.fakes.pipedrive_server import FakePipedrive
from tests.helpers import Stack, running_stack
from tests.mail_services import DovecotServer, SmtpRecorder
from tests.services import LOCAL_TARGETS, PostgresDatabase, RedisServer, free_port

SHAPES = ["embedded", "production"]

# Every Settings made in the tests may reach the local fake providers and reply receivers
# (loopback, http); tests/hub/test_fetch.py checks the policy itself with its own settings.
for _name, _value in LOCAL_TARGETS.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private Redis for the session; tests keep apart by key prefix."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test copies."""
    db = PostgresDatabase.create()
    upgrade(db.sqlalchemy_url)
    yield db.name
    db.drop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    """The deployment shape under test."""
    return str(request.param)


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, shape: str, tmp_path: Path, sqlite_template: Path
) -> Iterator[Settings]:
    """Settings of a fresh, migrated, isolated Switchboard in the given shape."""
    port = free_port()
    base = {
        "data_dir": tmp_path / "var",
        "port": port,
        "host": "127.0.0.1",
        "log_level": "warning",
        "claim_idle_ms": 1000,
        "presence_seconds": 60,
        "snooze_check_seconds": 0.5,
        "sla_check_seconds": 0.2,
    }
    if shape == "embedded":
        (tmp_path / "var").mkdir()
        shutil.copy(sqlite_template, tmp_path / "var" / "switchboard.db")
        yield load_settings(**base)
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    template: str = request.getfixturevalue("pg_template")
    db = PostgresDatabase.create_from_template(template)
    try:
        yield load_settings(
            **base,
            database_url=db.url,
            redis_url=redis.url,
            redis_prefix=f"t{secrets.token_hex(4)}:",
        )
    finally:
        db.drop()


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    """A running Switchboard (web + worker in this process) with seeded agents and inboxes."""
    async with running_stack(settings) as running:
        yield running


@pytest.fixture
async def mail_stack(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Stack, DovecotServer, SmtpRecorder]]:
    """A running Switchboard with a private Dovecot and an SMTP recorder beside it."""
    dovecot = DovecotServer.start(tmp_path)
    smtp = SmtpRecorder()
    smtp.start()
    fast = settings.model_copy(update={"poller_rescan_seconds": 0.2})
    try:
        async with running_stack(fast) as stack:
            yield stack, dovecot, smtp
    finally:
        smtp.stop()
        dovecot.remove()


@pytest.fixture
async def crm_stack(settings: Settings) -> AsyncIterator[Stack]:
    """A stack that syncs CRMs within a fraction of a second, reached at 127.0.0.1 (where
    the local CRMs send their webhooks, signed or authenticated for that URL)."""
    fast = settings.model_copy(update={
        "crm_poll_seconds": 0.1, "public_url": f"http://127.0.0.1:{settings.port}"})
    async with running_stack(fast) as stack:
        yield stack


@pytest.fixture
async def hubspot() -> AsyncIterator[FakeHubSpot]:
    """A local HubSpot (tests/fakes/hubspot_server.py)."""
    running = FakeHubSpot()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def pipedrive() -> AsyncIterator[FakePipedrive]:
    """A local Pipedrive (tests/fakes/pipedrive_server.py)."""
    running = FakePipedrive()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
