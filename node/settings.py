"""Node settings: one pydantic-settings class, built by the CLI from ``<home>/node.env`` and the
environment (prefix ``PUBLIEKSDATA_NODE_``) and passed into the app factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.catalogue import DIMENSIONS

ENV_FILE = "node.env"
SECRET_FILE = "secret.key"  # noqa: S105 - a file name, not a secret
SIGNING_KEY_FILE = "signing.key"
# Written by 'node restore': answer nothing until the aggregator has confirmed the budget spent.
BUDGET_SYNC_FILE = "budget-sync.required"
DEFAULT_HOME = Path("publieksdata-node")
TESTING_ENV = "PUBLIEKSDATA_TESTING"


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PUBLIEKSDATA_NODE_", extra="ignore", env_file_encoding="utf-8"
    )

    home: Path = DEFAULT_HOME
    institution: str = Field(default="Mijn instelling", max_length=120)
    database_url: str = ""

    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=1, le=65535)

    # Budget (design §7). ρ per period, in zCDP units; pure-ε queries are charged ε²/2.
    budget_period: Literal["year", "quarter", "month"] = "year"
    budget_rho: float = Field(default=1.0, gt=0, le=100)
    analyst_budget_rho: float | None = Field(default=None, gt=0, le=100)

    # Policy.
    max_cells: int = Field(default=20_000, ge=1, le=100_000)
    max_rho_per_query: float = Field(default=0.5, gt=0, le=10)
    max_visits_per_person: int = Field(default=100, ge=1, le=1_000)
    allowed_dimensions: list[str] | None = None
    # Secure rounds: refuse any whose worst-case ρ (this node's own noise share alone, if the
    # aggregator colludes with all the other nodes) exceeds this. It grows with the threshold t
    # (about t·ρ): 10 admits ρ = 0.1 at the sector's 90 institutions (t = 60, worst case 6).
    secure_max_worst_rho: float = Field(default=10.0, gt=0, le=1000)
    secure_answers: bool = True  # False: refuse every secure round
    # "manual": every query waits on the admin pages for the operator's approval.
    approval: Literal["auto", "manual"] = "auto"

    # Retention: admissions whose event is older than this many days are deleted (daily).
    retention_days: int | None = Field(default=None, ge=30, le=36_500)

    # Admin pages (/admin): the operator's login. Only loopback clients unless admin_remote.
    admin_enabled: bool = True
    admin_remote: bool = False
    admin_cookie_secure: bool = True
    admin_session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    admin_session_max_hours: int = Field(default=12, ge=1, le=24 * 7)
    admin_max_failures: int = Field(default=5, ge=1, le=100)
    admin_lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    admin_max_upload_bytes: int = Field(default=1024**3, ge=1024, le=16 * 1024**3)

    # Imports: an XLSX workbook that unpacks to more bytes, or to more times its own size, or
    # with more rows, is refused before it is parsed (a few MB can unpack to gigabytes).
    import_xlsx_max_unpacked_bytes: int = Field(default=2 * 1024**3, ge=1024**2, le=16 * 1024**3)
    import_xlsx_max_ratio: int = Field(default=100, ge=10, le=100_000)
    import_xlsx_max_rows: int = Field(default=1_048_576, ge=1, le=100_000_000)

    # Transport.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    message_max_age_seconds: int = Field(default=300, ge=10, le=3600)

    # The outbound connection to the aggregator (after 'node join').
    connect: bool = True
    aggregator_ca_file: Path | None = None  # trust only this CA for the aggregator's certificate
    insecure_http: bool = False  # allow http:// to a non-loopback aggregator (test networks only)
    poll_wait_seconds: float = Field(default=25.0, ge=0.5, le=120)

    # Testing only: answers carry exact values. Refused unless PUBLIEKSDATA_TESTING=1.
    unsafe_disable_noise: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.home / 'node.db').resolve()}"
        if self.unsafe_disable_noise and os.environ.get(TESTING_ENV) != "1":
            raise ValueError(
                "unsafe_disable_noise releases exact figures and is only for tests; "
                f"it needs {TESTING_ENV}=1"
            )
        if self.aggregator_ca_file is not None and not self.aggregator_ca_file.is_file():
            raise ValueError(f"aggregator_ca_file {self.aggregator_ca_file} is not a file")
        if self.allowed_dimensions is not None:
            unknown = [d for d in self.allowed_dimensions if d not in DIMENSIONS]
            if unknown:
                raise ValueError(f"allowed_dimensions names unknown dimensions: {unknown}")
        return self

    @property
    def secret_path(self) -> Path:
        return self.home / SECRET_FILE

    @property
    def signing_key_path(self) -> Path:
        return self.home / SIGNING_KEY_FILE

    @property
    def budget_sync_path(self) -> Path:
        return self.home / BUDGET_SYNC_FILE

    @classmethod
    def load(cls, home: Path, **overrides: object) -> NodeSettings:
        env_file = home / ENV_FILE
        return cls(
            _env_file=env_file if env_file.exists() else None,
            home=home,
            **overrides,  # type: ignore[arg-type]
        )
