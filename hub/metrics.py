"""Prometheus metrics of a Switchboard process, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter(
    "switchboard_webhooks_total", "Provider webhooks by channel and outcome",
    ["channel", "outcome"],
)
BUS_ENTRIES = Counter(
    "switchboard_bus_entries_total", "Bus entries handled by stream and outcome",
    ["stream", "outcome"],
)
INGEST_SECONDS = Histogram(
    "switchboard_ingest_seconds", "Time to thread and store one inbound message",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ACCEPT_TO_STORE_SECONDS = Histogram(
    "switchboard_accept_to_store_seconds", "Time from a message's acceptance to its commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SENDS = Counter(
    "switchboard_sends_total", "Outgoing messages by channel and outcome", ["channel", "outcome"]
)
WEBSOCKETS = Gauge("switchboard_websockets", "Open agent websockets in this process")
EVENTS_DELIVERED = Counter(
    "switchboard_websocket_events_total", "Events sent to agent websockets"
)
RESYNCS = Counter("switchboard_websocket_resyncs_total", "Resync signals sent to agent websockets")
SLOW_DROPS = Counter(
    "switchboard_websocket_slow_drops_total",
    "Websockets (agent or widget) disconnected for taking no frame within "
    "SWITCHBOARD_WEBSOCKET_SEND_SECONDS")
OUTBOX_RELAYED = Counter(
    "switchboard_outbox_relayed_total", "Outbox rows (events, send requests) published"
)
DEAD_LETTERS = Gauge(
    "switchboard_dead_letters", "Entries waiting in a stream's dead letters", ["stream"]
)
OUTAGE_RETRIES = Counter(
    "switchboard_outage_retries_total",
    "Bus entries retried because the database or the bus was unreachable (never dead-lettered)",
    ["stream"],
)
