"""Running publieksdata services as child processes: start, wait until healthy, stop cleanly.

Used by ``publieksdata demo`` and by the end-to-end tests and benchmarks. Children run in their
own process group, so that stopping them (SIGTERM, then SIGKILL after a grace period) also
stops anything they started, and no orphan survives the parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceFailed(RuntimeError):
    """A service exited or did not become healthy in time; the message includes its log."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flush — a crash."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self._signal_group(signal.SIGKILL)  # children the service may have left behind

    def wait_healthy(self, timeout: float, verify: ssl.SSLContext | bool = True) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ServiceFailed(
                    f"{self.name} exited with {self.process.returncode}:\n{self.output()[-3000:]}"
                )
            try:
                health = httpx.get(f"{self.url}/v1/health", timeout=1, verify=verify)
                if health.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"{self.name} did not start in {timeout:g} s:\n{self.output()[-3000:]}"
                )
            time.sleep(0.05)


def start(
    name: str,
    arguments: Sequence[str],
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
) -> Service:
    """Start ``python -m publieksdata ARGUMENTS`` in its own process group (not yet healthy)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "publieksdata", *arguments],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, **(env or {})),
            start_new_session=True,
        )
    finally:
        handle.close()
    return Service(name, process, f"http://127.0.0.1:{port}", log)


@dataclass
class Supervisor:
    """Owns a set of services and stops them all, in reverse order, on exit."""

    services: list[Service] = field(default_factory=list)

    def add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()
