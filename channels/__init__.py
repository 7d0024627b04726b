"""One adapter per channel: verify, parse, send, and (for pulled channels) run."""
