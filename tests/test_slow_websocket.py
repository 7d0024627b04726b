"""Websocket readers that cannot keep up, on both shapes: one that falls behind by more
than its queue is told to resync and stays connected; one that stalls is disconnected after
SWITCHBOARD_WEBSOCKET_SEND_SECONDS and catches up when it comes back. Neither holds more
than its bounded queue and its socket's buffer, and the other readers hear everything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from config import Settings
from tests.helpers import Agent, Socket, Stack, eventually, running_stack

EVENTS = 120
PAD = "x" * 100_000  # 120 events of 100 KB: far more than any socket buffer holds


@asynccontextmanager
async def stack_with(settings: Settings, **update: Any) -> AsyncIterator[Stack]:
    async with running_stack(settings.model_copy(update=update)) as stack:
        yield stack


def filler(stack: Stack, n: int, text: str = PAD) -> bytes:
    """A live event of the support inbox (a type the inbox ignores) carrying `text`."""
    return json.dumps({"v": 1, "id": "0", "inbox_id": stack.ids["support"],
                       "at": "2026-12-05T00:00:00Z", "audience": None,
                       "type": "test.filler", "n": n, "pad": text}).encode()


async def broadcast(stack: Stack, numbers: range, text: str = PAD,
                    paced_by: Socket | None = None) -> None:
    """Publish fillers; with `paced_by`, each once that reader has the one before (a
    reader that keeps up is then never more than one event behind)."""
    bus = stack.app.state.switchboard.inbox.bus
    for n in numbers:
        await bus.broadcast(filler(stack, n, text), 10_000)
        if paced_by is not None:
            await paced_by.wait_event(
                lambda e, n=n: e["type"] == "test.filler" and e["n"] == n, timeout=30)


class RawSocket:
    """An agent websocket over a plain socket with a 4 KiB receive buffer, driven by hand
    (websockets' sans-I/O client): it reads only when a test asks for a frame, so a server
    sending to it soon finds no room. Offers no compression."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock, self.protocol = sock, protocol
        self.frames: list[dict[str, Any]] = []
        self.closed = False

    @classmethod
    async def open(cls, stack: Stack, agent: Agent) -> tuple[RawSocket, str]:
        """Connected and past `ready` (whose last_event_id comes with it)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", stack.settings.port))
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{stack.settings.port}/api/v1/ws"))
        request = protocol.connect()
        request.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in agent.http.cookies.items())
        request.headers["Origin"] = f"http://localhost:{stack.settings.port}"
        protocol.send_request(request)
        raw = cls(sock, protocol)
        await raw._flush()
        while (frame := await raw.next(10)) is not None:
            if frame["type"] == "ready":
                return raw, str(frame["last_event_id"])
        raise AssertionError("closed before ready")

    async def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next text frame, or None once the server has closed the connection."""
        loop = asyncio.get_running_loop()
        while not self.frames and not self.closed:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout)
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
                self.closed = True
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                    self.frames.append(json.loads(event.data))
                elif isinstance(event, Frame) and event.opcode == Opcode.CLOSE:
                    self.closed = True
            with contextlib.suppress(OSError):
                await self._flush()  # pongs, the answer to a close
        return self.frames.pop(0) if self.frames else None

    def close(self) -> None:
        self.sock.close()


def fillers_of(frames: list[dict[str, Any]]) -> list[int]:
    return [f["event"]["n"] for f in frames
            if f["type"] == "event" and f["event"]["type"] == "test.filler"]


async def slow_drops(agent: Agent) -> float:
    text = (await agent.http.get("/metrics")).text
    found = re.search(r"^switchboard_websocket_slow_drops_total (\S+)$", text, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


async def test_a_reader_too_far_behind_is_told_to_resync_and_stays(settings: Settings) -> None:
    async with stack_with(settings, websocket_queue_events=20,
                          websocket_send_seconds=60.0) as stack:
        fanout = stack.app.state.switchboard.fanout
        admin = await stack.login("admin")
        reader = await admin.ws()
        behind, _ = await RawSocket.open(stack, admin)
        await broadcast(stack, range(EVENTS), paced_by=reader)
        assert fillers_of(reader.frames) == list(range(EVENTS))
        # Offered everything meanwhile: what waits for the slow one is at most its queue.
        assert all(listener.queue.qsize() <= 20 for listener in fanout._listeners)

        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] != "resync":
            frame = await behind.next(30)
            assert frame is not None, "closed instead of told to resync"
            frames.append(frame)
        assert frames[-1]["reason"] == "too many events missed"
        got = fillers_of(frames)
        assert got == sorted(got) and len(got) < EVENTS  # some, in order; then the resync
        # Still connected, and live again.
        await broadcast(stack, range(EVENTS, EVENTS + 1), "small")
        while True:
            later = await behind.next(30)
            assert later is not None
            if later["type"] == "event" and later["event"]["n"] == EVENTS:
                break
        assert fanout.listener_count == 2
        behind.close()
        await reader.close()


async def test_a_stalled_reader_is_disconnected_and_catches_up_on_return(
        settings: Settings) -> None:
    async with stack_with(settings, websocket_queue_events=1000,
                          websocket_send_seconds=3.0) as stack:
        fanout = stack.app.state.switchboard.fanout
        admin = await stack.login("admin")
        drops = await slow_drops(admin)
        reader = await admin.ws()
        stalled, ready_id = await RawSocket.open(stack, admin)
        assert fanout.listener_count == 2
        await broadcast(stack, range(EVENTS))
        await reader.wait_event(lambda e: e["type"] == "test.filler" and e["n"] == EVENTS - 1,
                                timeout=60)
        assert fillers_of(reader.frames) == list(range(EVENTS))

        # Its server side ends: the listener, its queue and its task are let go.
        async def let_go() -> bool:
            return bool(fanout.listener_count == 1)

        await eventually(let_go, timeout=30)
        assert await slow_drops(admin) == drops + 1

        # Back, it reads what its socket held, then finds the connection closed ...
        frames: list[dict[str, Any]] = []
        while (frame := await stalled.next(30)) is not None:
            frames.append(frame)
        stalled.close()
        held = fillers_of(frames)
        assert held == list(range(len(held))) and len(held) < EVENTS
        last = next((f["id"] for f in reversed(frames) if f["type"] == "event"), ready_id)
        # ... and reconnecting from its last event gets the rest: nothing lost.
        back = await admin.ws(last_event_id=last)
        assert held + fillers_of(back.frames) == list(range(EVENTS))
        await back.close()
        await reader.close()
