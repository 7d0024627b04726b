"""The `switchboard` command: every subcommand has help; bad settings fail clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ["serve", "web", "worker", "migrate", "createuser", "demo", "secret-key", "reseal",
            "dead-letters", "attachments"]


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})}, cwd=cwd or Path(__file__).resolve().parents[1],
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0
    assert f"usage: switchboard {command}" in result.stdout


def test_bad_settings_stop_with_one_line_each(tmp_path: Path) -> None:
    result = _run("migrate", env={"SWITCHBOARD_PORT": "x", "SWITCHBOARD_REDIS_URL": "http://no"})
    assert result.returncode == 2
    assert "SWITCHBOARD_PORT:" in result.stderr and "SWITCHBOARD_REDIS_URL:" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_then_createuser(tmp_path: Path) -> None:
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_DATABASE_URL": "",
           "SWITCHBOARD_NEW_PASSWORD": "a-long-password"}
    assert _run("migrate", env=env).returncode == 0
    created = _run("createuser", "--email", "Ops@Example.com", "--role", "admin", env=env)
    assert created.returncode == 0, created.stderr
    assert "created admin ops@example.com" in created.stdout
    again = _run("createuser", "--email", "ops@example.com", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    short = _run("createuser", "--email", "x@example.com",
                 env={**env, "SWITCHBOARD_NEW_PASSWORD": "short"})
    assert short.returncode == 2 and "at least 8" in short.stderr
    no_inbox = _run("createuser", "--email", "y@example.com", "--inbox", "42", env=env)
    assert no_inbox.returncode == 2 and "no inbox with id 42" in no_inbox.stderr


def test_demo_reset_starts_over_and_touches_only_the_embedded_demo(tmp_path: Path) -> None:
    from config import Settings
    from hub.cli import _reset_demo

    data = tmp_path / "var"
    data.mkdir()
    kept = data / "notes.txt"
    kept.write_text("mine")
    for name in ("switchboard.db", "switchboard.db-wal", "bus.db", "bus.db-shm"):
        (data / name).write_bytes(b"old demo")
    _reset_demo(Settings(data_dir=data, database_url="", redis_url=""))
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]
    assert kept.read_text() == "mine"
    with pytest.raises(SystemExit, match="embedded demo data only"):
        _reset_demo(Settings(data_dir=data, database_url="postgresql+asyncpg://x/y"))
    assert "--reset" in _run("demo", "--help").stdout
