"""The tests' own Switchboard starts even when the free port it was given is taken before it
binds it (another test's server, or a client connection's port): it takes another one."""

from __future__ import annotations

import gc
import socket

import pytest

from config.settings import Settings
from hub import app
from tests.helpers import running_stack


@pytest.mark.parametrize("shape", ["embedded"])
async def test_a_stack_starts_on_another_port_when_its_port_was_taken(
        settings: Settings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", settings.port))
        taken.listen()
        async with running_stack(settings) as stack:
            assert stack.settings.port != settings.port
            assert stack.base == f"http://127.0.0.1:{stack.settings.port}"
            answer = await stack.client().get("/login")
            assert answer.status_code == 200


@pytest.mark.parametrize("shape", ["embedded"])
async def test_a_started_process_leaves_its_startup_objects_out_of_garbage_collection(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Full collections walking every module and mapped class paused searches for 70-106 ms
    # (docs/performance.md); once started, they are frozen (hub/app.py).
    gc.unfreeze()
    monkeypatch.setattr(app, "_settled", False)
    async with running_stack(settings) as stack:
        assert (await stack.client().get("/login")).status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules' objects, at least
    app.settle_after_start()  # once a process
    assert gc.get_freeze_count() <= frozen  # frozen objects may still be freed, none added
