"""Aggregator settings: one pydantic-settings class, built by the CLI from
``<home>/aggregator.env`` and the environment (prefix ``PUBLIEKSDATA_AGGREGATOR_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.serving import check_forwarded_allow_ips

ENV_FILE = "aggregator.env"
SIGNING_KEY_FILE = "signing.key"
DEFAULT_HOME = Path("publieksdata-aggregator")
TESTING_ENV = "PUBLIEKSDATA_TESTING"


class AggregatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PUBLIEKSDATA_AGGREGATOR_", extra="ignore", env_file_encoding="utf-8"
    )

    home: Path = DEFAULT_HOME
    name: str = Field(default="publieksdata aggregator", max_length=120)
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8480, ge=1, le=65535)
    # After a node rotates its key, its old key stays valid this long (in-flight answers).
    node_key_overlap_hours: float = Field(default=24.0, ge=0, le=24 * 30)
    # Serve HTTPS directly (uvicorn's TLS); or leave both unset behind Caddy or nginx.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # The TLS proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or
    # networks, comma-separated, or "*" (only when nothing but the proxy can reach the port).
    # A request from any other peer keeps its own address, whatever headers it sends.
    forwarded_allow_ips: str = Field(default="127.0.0.1,::1", max_length=2000)

    # Rounds.
    default_deadline_seconds: int = Field(default=300, ge=1, le=7 * 86400)
    max_deadline_seconds: int = Field(default=7 * 86400, ge=1, le=30 * 86400)
    max_nodes_per_round: int = Field(default=5_000, ge=1)
    # No merged result from fewer answering institutions than this, so that a result never
    # shows one institution's (noisy) figure to analysts. Every round's quorum is at least this.
    min_quorum: int = Field(default=3, ge=1, le=1_000)

    # Nodes connecting out: how long one long-poll may hang, and how old a signed poll may be.
    max_poll_wait_seconds: float = Field(default=30.0, ge=0.5, le=120)
    message_max_age_seconds: int = Field(default=300, ge=10, le=3600)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)

    # The public site: its address as readers see it (behind the TLS proxy), for the links in
    # the DCAT-AP catalogue and the pages. Empty: the address of each request.
    public_base_url: str = Field(default="", max_length=300, pattern=r"^(https?://[^\s/]+.*)?$")

    # Enrolment.
    invite_valid_hours: float = Field(default=72, gt=0, le=24 * 30)
    enrol_max_failures: int = Field(default=5, ge=1, le=1000)  # per source address
    enrol_max_failures_total: int = Field(default=50, ge=1, le=100_000)  # all sources
    enrol_lockout_minutes: float = Field(default=15, gt=0, le=24 * 60)

    # Testing only: accept answers without noise (exact figures). Refused unless
    # PUBLIEKSDATA_TESTING=1, like the node's own switch.
    unsafe_accept_exact_answers: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.home / 'aggregator.db').resolve()}"
        if self.unsafe_accept_exact_answers and os.environ.get(TESTING_ENV) != "1":
            raise ValueError(
                "unsafe_accept_exact_answers lets exact figures through and is only for tests; "
                f"it needs {TESTING_ENV}=1"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: set both or neither")
        for path in (self.tls_certfile, self.tls_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a file")
        check_forwarded_allow_ips(self.forwarded_allow_ips)
        if self.default_deadline_seconds > self.max_deadline_seconds:
            raise ValueError("default_deadline_seconds is larger than max_deadline_seconds")
        return self

    @property
    def signing_key_path(self) -> Path:
        return self.home / SIGNING_KEY_FILE

    @classmethod
    def load(cls, home: Path, **overrides: object) -> AggregatorSettings:
        env_file = home / ENV_FILE
        return cls(
            _env_file=env_file if env_file.exists() else None,
            home=home,
            **overrides,  # type: ignore[arg-type]
        )
