"""Key holder settings: one pydantic-settings class, built by the CLI from
``<home>/keyholder.env`` and the environment (prefix ``PUBLIEKSDATA_KEYHOLDER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.sector import MAX_BATCH
from servicekit.serving import check_forwarded_allow_ips

ENV_FILE = "keyholder.env"
SIGNING_KEY_FILE = "signing.key"
SHARE_FILE = "share.json"
DEFAULT_HOME = Path("publieksdata-keyholder")


class KeyholderSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PUBLIEKSDATA_KEYHOLDER_", extra="ignore", env_file_encoding="utf-8"
    )

    home: Path = DEFAULT_HOME
    name: str = Field(default="publieksdata key holder", min_length=1, max_length=120)
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8490, ge=1, le=65535)
    # The TLS proxies whose X-Forwarded-For is believed (as the aggregator's setting): addresses
    # or networks, comma-separated, or "*". Enrolment lock-outs count per client address.
    forwarded_allow_ips: str = Field(default="127.0.0.1,::1", max_length=2000)

    # One request holds at most this many blinded elements.
    max_batch: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH)
    # Per enrolled node: at most this many elements per window. An institution needs about
    # (distinct persons) x (years imported); the limit is what keeps a node from pseudonymising
    # a list of guessed addresses (docs/explanation/sector-pseudonym.md, "Enumeration").
    rate_limit_elements: int = Field(default=1_000_000, ge=1, le=100_000_000)
    rate_window_seconds: int = Field(default=86_400, ge=1, le=366 * 86_400)
    # Bodies: a full batch of hex elements in a signed envelope is about 70 bytes per element.
    max_body_bytes: int = Field(default=512 * 1024, ge=1024, le=16 * 1024 * 1024)
    message_max_age_seconds: int = Field(default=300, ge=10, le=3600)

    # Enrolment.
    invite_valid_hours: float = Field(default=72, gt=0, le=24 * 30)
    enrol_max_failures: int = Field(default=5, ge=1, le=1000)  # per source address
    enrol_lockout_minutes: float = Field(default=15, gt=0, le=24 * 60)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.home / 'keyholder.db').resolve()}"
        check_forwarded_allow_ips(self.forwarded_allow_ips)
        if self.max_body_bytes < self.max_batch * 70 + 2048:
            raise ValueError(
                f"max_body_bytes {self.max_body_bytes} cannot hold a batch of {self.max_batch} "
                "elements; raise it or lower max_batch"
            )
        return self

    @property
    def signing_key_path(self) -> Path:
        return self.home / SIGNING_KEY_FILE

    @property
    def share_path(self) -> Path:
        return self.home / SHARE_FILE

    @classmethod
    def load(cls, home: Path, **overrides: object) -> KeyholderSettings:
        env_file = home / ENV_FILE
        return cls(
            _env_file=env_file if env_file.exists() else None,
            home=home,
            **overrides,  # type: ignore[arg-type]
        )
