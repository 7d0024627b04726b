"""Settings: read once from the environment, one clear line per wrong value."""

from __future__ import annotations

import pytest

from config import SettingsError, load_settings


def test_defaults_are_the_embedded_shape(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for name in ("SWITCHBOARD_DATABASE_URL", "SWITCHBOARD_REDIS_URL", "SWITCHBOARD_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.embedded
    assert settings.sqlalchemy_url == "sqlite+aiosqlite:///var/switchboard.db"
    assert settings.base_url == "http://localhost:8000"
    assert "http://127.0.0.1:8000" in settings.origins


def test_environment_switches_to_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", "postgresql://u@db/sb")
    monkeypatch.setenv("SWITCHBOARD_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("SWITCHBOARD_PUBLIC_URL", "https://help.example.com/")
    settings = load_settings()
    assert not settings.embedded
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@db/sb"
    assert settings.origins == frozenset({"https://help.example.com"})


def test_every_wrong_value_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_PORT", "eighty")
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("SWITCHBOARD_DATABASE_URL: ") and "postgresql://" in lines[0]
    assert lines[1].startswith("SWITCHBOARD_PORT: ") and "'eighty'" in lines[1]


def test_urls_with_passwords_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_REDIS_URL", "http://user:hunter2@cache")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "SWITCHBOARD_REDIS_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)
