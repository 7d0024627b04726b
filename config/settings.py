"""Switchboard's settings: read once from the environment (and an optional `.env`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """Raised with one line per wrong value when the settings do not validate."""


class Settings(BaseSettings):
    """Every knob of Switchboard; `SWITCHBOARD_<NAME>` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Field(Path("var"), description="Where the embedded database and bus live.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means a SQLite file under the data directory."
    )
    redis_url: str = Field("", description="Redis URL; empty means the embedded bus.")
    redis_prefix: str = Field("sb:", description="Prefix of every Redis key Switchboard uses.")
    public_url: str = Field(
        "", description="The URL agents and providers reach Switchboard at; default "
        "http://localhost:<port>."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Extra browser origins allowed for agent websockets."
    )
    host: str = Field("127.0.0.1", description="Interface the web server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the web server listens on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error."
    )
    worker_name: str = Field("", description="Consumer name of this worker; default host+pid.")
    worker_concurrency: int = Field(
        8, ge=1, le=256, description="Outgoing messages a worker sends at once."
    )
    ingest_batch: int = Field(
        100, ge=1, le=1000, description="Inbound messages a worker threads in one transaction."
    )
    max_deliveries: int = Field(
        5, ge=1, description="Deliveries of one bus entry before it goes to the dead letters."
    )
    claim_idle_ms: int = Field(
        15_000, ge=100, description="Idle time after which a dead consumer's entries are taken."
    )
    stream_maxlen: int = Field(
        100_000, ge=100, description="Soft bound of each stream (pending entries always stay)."
    )
    reopen_window_seconds: int = Field(
        7 * 24 * 3600, ge=0, description="A resolved conversation reopens on a reply within this."
    )
    session_days: int = Field(14, ge=1, description="Agent sessions last this many days.")
    webhook_max_bytes: int = Field(1_000_000, ge=1024, description="Largest webhook body.")
    webhook_requests_per_second: int = Field(
        2000, ge=1, le=1_000_000, description="Webhook requests one inbox may receive per "
        "second in one web process, twice that at once (429 with Retry-After beyond).")
    webhook_tolerance_seconds: int = Field(
        300, ge=1, description="Largest clock skew accepted on a signed webhook."
    )
    attachment_max_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="Largest file accepted as an attachment."
    )
    attachment_storage: Literal["database", "directory", "s3"] = Field(
        "database", description="Where new attachments' bytes go: the database, a "
        "directory (SWITCHBOARD_ATTACHMENT_DIR) or an S3-compatible bucket (SWITCHBOARD_S3_*); "
        "files stored before a change stay where they are, and readable.")
    attachment_dir: Path | None = Field(
        None, description="The directory for attachment_storage=directory; default "
        "<data dir>/attachments. Every process that serves or sends files must see it.")
    s3_bucket: str = Field("", description="The bucket for attachment_storage=s3.")
    s3_endpoint_url: str = Field(
        "", description="The S3-compatible service (MinIO, Ceph, R2: https://host:port); "
        "empty: AWS S3.")
    s3_region: str = Field("us-east-1", description="The bucket's region.")
    s3_access_key_id: str = Field("", description="Access key; empty: the usual AWS "
                                  "sources (environment, instance role).")
    s3_secret_access_key: SecretStr = Field(SecretStr(""), description="Its secret.")
    s3_prefix: str = Field("attachments/", description="Prefix of every object's key.")
    snooze_check_seconds: float = Field(
        15.0, gt=0, description="How often workers wake conversations whose snooze ended."
    )
    consumed_events_keep_days: int = Field(
        7, ge=1, description="How long event consumers (CRM sync, webhooks, automation) "
        "remember the events they handled, to skip one delivered again; redelivery comes "
        "within minutes, so a week is ample.")
    quarantine_keep_days: int = Field(
        90, ge=0, description="How long what a channel received but could not parse (the "
        "provider's raw payload, shown to admins) is kept; 0 keeps it forever.")
    housekeeping_seconds: float = Field(
        3600.0, gt=0, description="How often workers forget what the two settings above no "
        "longer keep.")
    demo_page: bool = Field(False, description="Serve the demo website at /demo (demo only).")
    outbound_http: bool = Field(
        False, description="Let outbound requests (API-channel replies, provider calls) use "
        "plain http:// (development only; https otherwise).")
    outbound_allow: list[str] = Field(
        default_factory=list, description="Networks (10.0.0.0/8) or host names outbound "
        "requests may reach although they are private or loopback (self-hosted targets).")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or networks of the reverse proxies in "
        "front of Switchboard (JSON list: [\"10.0.0.5\", \"172.16.0.0/12\"]); only their "
        "X-Forwarded-For and X-Forwarded-Proto are believed. Empty: none, the peer is the "
        "client.")
    secret_key: SecretStr = Field(
        SecretStr(""), description="Fernet keys that seal channel secrets at rest, comma "
        "separated: the first seals, all open (rotation: new key first, `switchboard "
        "reseal`, then drop the old). Empty: a key kept in <data dir>/secret.key.")
    metrics_token: str = Field(
        "", description="Bearer token a scraper sends for /metrics; without one, /metrics "
        "answers only on the loopback interface.")
    poller_rescan_seconds: float = Field(
        5.0, gt=0, description="How often workers look for new or changed polled inboxes."
    )
    widget_sessions_per_minute: int = Field(
        30, ge=1, le=100_000,
        description="New chat-widget sessions one address may start per minute (429 beyond).")
    widget_sockets_per_address: int = Field(
        20, ge=1, le=100_000,
        description="Chat-widget websockets one address may hold open at once.")
    widget_sockets_total: int = Field(
        5000, ge=1, le=1_000_000,
        description="Chat-widget websockets one web process holds open at once.")
    websocket_queue_events: int = Field(
        1000, ge=10, le=100_000,
        description="Live events a websocket (agent or widget) may fall behind by; beyond "
        "that it is told to resync (reload over HTTP) and what it had queued is let go.")
    websocket_send_seconds: float = Field(
        15.0, gt=0, le=600,
        description="A websocket client that takes no frame for this long is disconnected "
        "(it reconnects and catches up from its last event); a stalled client holds no more "
        "than its socket's buffer.")
    presence_seconds: int = Field(
        60, ge=5, description="An agent counts as online this long after their last heartbeat."
    )
    assignment_check_seconds: float = Field(
        5.0, gt=0, description="How often workers assign what waits in the queue and release "
        "the conversations of agents who went offline."
    )

    webhook_retry_base_seconds: float = Field(
        5.0, gt=0, description="Outbound webhooks: the wait before the first retry of a "
        "failed delivery; each later wait doubles (with jitter).")
    webhook_retry_max_seconds: float = Field(
        3600.0, gt=0, description="Outbound webhooks: the longest wait between two tries.")
    webhook_give_up_seconds: float = Field(
        86400.0, gt=0, description="Outbound webhooks: a delivery still failing this long "
        "after its first try is dead (replay it from the delivery log).")
    webhook_poll_seconds: float = Field(
        1.0, gt=0, description="How often workers look for outbound webhook deliveries that "
        "are due (a new event wakes the worker that recorded it at once).")

    report_time_zone: str = Field(
        "UTC", description="The time zone whose days the reports count in (an IANA name such "
        "as Europe/Berlin). Figures already counted keep the days they were counted in.")

    sla_check_seconds: float = Field(
        5.0, gt=0, description="How often workers look for SLA targets that became at risk or "
        "breached, and for timed automation rules whose wait is over (they come at most this "
        "late).")
    crm_claim_seconds: float = Field(
        60.0, gt=0, description="How long the CRM syncer holds the work it took: a syncer "
        "that died holding it leaves it to the next one after this.")
    crm_poll_seconds: float = Field(
        1.0, gt=0, description="How often the CRM syncer looks for due work (contacts, "
        "transcripts) when it had none.")

    crash_point: Literal["", "ingest-after-commit", "relay-before-publish",
                         "relay-after-publish"] = Field(
        "", description="For fault tests only: the process kills itself (as kill -9 would) "
        "the first time it reaches this point."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return [entry.strip() for entry in value]

    @field_validator("report_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (such as Europe/Berlin)"
                             ) from None
        return value

    @model_validator(mode="after")
    def _storage_complete(self) -> Settings:
        if self.attachment_storage == "s3" and not self.s3_bucket:
            raise ValueError("attachment_storage=s3 needs SWITCHBOARD_S3_BUCKET")
        if self.s3_endpoint_url and urlsplit(self.s3_endpoint_url).scheme not in (
                "http", "https"):
            raise ValueError("s3_endpoint_url must be an http(s) URL")
        return self

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("postgresql", "sqlite")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @property
    def embedded(self) -> bool:
        """True when the bus is the embedded one (no Redis configured)."""
        return not self.redis_url

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL of the database."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'switchboard.db'}"
        if url.startswith("sqlite:"):
            return url.replace("sqlite:", "sqlite+aiosqlite:", 1)
        for prefix in ("postgresql+asyncpg:", "postgresql+psycopg:", "postgresql:"):
            if url.startswith(prefix):
                return "postgresql+asyncpg:" + url[len(prefix) :]
        return url

    @property
    def base_url(self) -> str:
        """The public URL, or the local one when none is configured."""
        return self.public_url or f"http://localhost:{self.port}"

    @property
    def origins(self) -> frozenset[str]:
        """Browser origins allowed to open agent websockets."""
        parts = urlsplit(self.base_url)
        found = {f"{parts.scheme}://{parts.netloc}", *self.allowed_origins}
        if not self.public_url:  # a local default: the loopback spellings are the same host
            found |= {f"http://127.0.0.1:{self.port}", f"http://[::1]:{self.port}"}
        return frozenset(found)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; raise SettingsError with one line per wrong value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]) or "settings"
            value = error.get("input")
            # URLs may carry passwords, and a check of the whole settings sees every
            # secret: never echo them.
            shown = "" if name.endswith(("url", "key")) or not error["loc"] else (
                f" (got {value!r})")
            lines.append(f"SWITCHBOARD_{name.upper()}: {error['msg']}{shown}")
        raise SettingsError("\n".join(lines)) from None
