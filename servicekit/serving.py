"""What every service's ``serve`` command shares: the ``--host``/``--port`` overrides, the log
level, the uvicorn options all three run with, and the check of the proxies they trust. Uvicorn
itself is imported by the command, so the CLI starts fast."""

from __future__ import annotations

import ipaddress
import os
from typing import Any


def listen_overrides(host: str | None, port: int | None) -> dict[str, Any]:
    """The settings a ``serve`` command's ``--host`` and ``--port`` override, if given."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    return overrides


def log_level() -> str:
    """The level a service logs at: ``PUBLIEKSDATA_LOG_LEVEL``, by default ``info``."""
    return os.environ.get("PUBLIEKSDATA_LOG_LEVEL", "info")


def uvicorn_options(host: str, port: int, level: str, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``: our logging (plain or JSON),
    not uvicorn's, no access log, five seconds of graceful shutdown; ``extra`` adds to them."""
    return {
        "host": host,
        "port": port,
        "log_level": level,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 5,
        **extra,
    }


def check_forwarded_allow_ips(value: str) -> None:
    """Refuse a ``forwarded_allow_ips`` setting with an entry that is neither ``*`` nor an
    address or network: the app trusts proxy headers only from these."""
    for entry in value.split(","):
        if entry.strip() != "*":
            try:
                ipaddress.ip_network(entry.strip())
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {entry.strip()!r} is not an address or network"
                ) from None
