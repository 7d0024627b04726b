"""Local stand-ins for third-party APIs, at their HTTP boundary."""
