"""The parts of every ``serve`` command that are the same: overrides, log level, uvicorn options."""

from __future__ import annotations

import pytest

from servicekit.serving import (
    check_forwarded_allow_ips,
    listen_overrides,
    log_level,
    uvicorn_options,
)


def test_only_given_options_override_the_settings() -> None:
    assert listen_overrides(None, None) == {}
    assert listen_overrides("0.0.0.0", None) == {"host": "0.0.0.0"}
    assert listen_overrides(None, 8080) == {"port": 8080}


def test_the_log_level_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLIEKSDATA_LOG_LEVEL", raising=False)
    assert log_level() == "info"
    monkeypatch.setenv("PUBLIEKSDATA_LOG_LEVEL", "warning")
    assert log_level() == "warning"


def test_uvicorn_options_keep_our_logging_and_add_extras() -> None:
    options = uvicorn_options("127.0.0.1", 8000, "info", proxy_headers=False)
    assert options == {
        "host": "127.0.0.1",
        "port": 8000,
        "log_level": "info",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 5,
        "proxy_headers": False,
    }


def test_trusted_proxies_are_addresses_networks_or_star() -> None:
    check_forwarded_allow_ips("127.0.0.1, ::1,10.0.0.0/8,*")
    with pytest.raises(ValueError, match=r"'proxy\.example' is not an address or network"):
        check_forwarded_allow_ips("127.0.0.1,proxy.example")
