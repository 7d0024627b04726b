"""The refusals of inbox actions, shared by every action module (the web maps them to HTTP)."""

from __future__ import annotations

from datetime import datetime


class NotFound(LookupError):
    """The conversation does not exist or the agent may not see it (both look the same)."""


class Refused(ValueError):
    """An action the rules do not allow, with a message for the agent."""


class Forbidden(PermissionError):
    """The agent may see this but their role does not let them do it."""


class Collision(Exception):
    """Someone else replied after the last message the agent saw (send again with force)."""


class WindowClosed(Refused):
    """Free text outside the channel's reply window: only an approved template may go out."""

    def __init__(self, hours: int, closed_at: datetime, *, channel: str = "this channel") -> None:
        super().__init__(
            f"the {channel} {hours}-hour window is closed; send an approved template"
        )
        self.hours = hours
        self.closed_at = closed_at
        self.channel = channel
