"""Fault injection for the crash tests: a process kills itself at a named point.

Off unless SWITCHBOARD_CRASH_POINT names the point; a test restarts the process without it.
"""

from __future__ import annotations

import logging
import os
import signal

from config import Settings

log = logging.getLogger("switchboard.faults")


def crash_point(settings: Settings, point: str) -> None:
    """Die here, as `kill -9` would, if the settings ask for it."""
    if settings.crash_point and settings.crash_point == point:
        log.error("crash point %s reached: killing this process", point)
        os.kill(os.getpid(), signal.SIGKILL)
