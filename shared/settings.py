"""Settings every service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, IPvAnyNetwork
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.ratelimit import check_limit, check_storage_uri


class ServiceSettings(BaseSettings):
    """Read from environment variables ``<PREFIX>_<FIELD>`` (e.g.
    ``CLOSELOOP_ROUTER_KAFKA_BOOTSTRAP``); each service sets its own prefix."""

    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_", extra="ignore")

    environment: Literal["production", "local"] = Field(
        default="production",
        description="local: the local stack (make run, the tests), whose published "
        "credentials are accepted; production refuses every secret everyone knows",
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_client_id: str | None = None
    kafka_idempotence: bool = Field(
        default=False,
        description="Idempotent producer: on for Apache Kafka, off for the local broker",
    )
    kafka_request_timeout_ms: int = Field(default=10_000, ge=100)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=500)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_max_poll_records: int = Field(default=200, ge=1)
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=0,
        le=30_000,
        description="Longest a fetch waits at the broker for data; Apache Kafka answers as "
        "soon as data arrives, the local broker only when the wait ends",
    )
    kafka_batch_linger_ms: int = Field(
        default=50,
        ge=0,
        le=5_000,
        description="After a fetch that returned events, wait this long for more before "
        "handling them, so that batch handlers get batches (fewer database round trips "
        "per event) at the price of this much latency per hop; 0 turns it off",
    )
    kafka_batch_linger_records: int = Field(
        default=0,
        ge=0,
        description="Stop lingering once a batch holds this many events (0: linger the "
        "whole time, up to KAFKA_MAX_POLL_RECORDS)",
    )
    kafka_consumer_group: str | None = Field(
        default=None, description="Consumer group id; defaults to closeloop-<service>"
    )

    mongo_url: str = "mongodb://127.0.0.1:27017/?retryWrites=false"
    mongo_database: str = "closeloop"
    mongo_timeout_ms: int = Field(
        default=5_000,
        ge=100,
        description="Server selection and connection timeout: how long consumers and jobs "
        "wait for the database before an attempt counts as failed (and is retried)",
    )
    mongo_request_timeout_ms: int = Field(
        default=1_500,
        ge=50,
        le=60_000,
        description="Budget for the database work of one HTTP request (PyMongo's "
        "client-side operation timeout); past it the request answers 503 with Retry-After",
    )
    retry_after_s: int = Field(
        default=5, ge=1, description="Retry-After when answering 503 (a dependency is down)"
    )

    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    handler_max_attempts: int = Field(
        default=5, ge=1, description="Attempts for an unexpected handler error before the DLQ"
    )

    rate_limit_storage: Annotated[str | None, AfterValidator(check_storage_uri)] = Field(
        default=None,
        description="Where rate limits, failed attempts and seen signatures are counted: "
        "unset, the service's MongoDB (MONGO_URL, MONGO_DATABASE), shared by every copy and "
        "kept over restarts; or a limits storage URI (async+mongodb://..., async+memory:// "
        "counts per process and forgets on restart)",
    )
    auth_failure_limit: Annotated[str, AfterValidator(check_limit)] = Field(
        default="20/minute",
        description="Failed attempts (wrong or missing key, bad signature, guessed survey "
        "link) allowed per client address, in limits notation; then 429 with Retry-After",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description='Networks of the proxies in front (JSON list, e.g. ["10.0.0.0/8"]) '
        "whose X-Forwarded-For names the client; empty: the peer's address is the client's",
    )
