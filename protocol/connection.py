"""Why a connection to the aggregator failed, said so that the person at the keyboard can act:
host not found, connection refused, TLS expected but plain HTTP answered, a TLS server asked
over plain http://, something that is not HTTP at all (a wrong port), a certificate that does
not verify, no answer in time. Used by the node (``join``, ``serve``, key rotation) and the
analyst client, instead of httpx's bare ``ConnectError``.

``describe`` is pure: it reads the exception chain (httpx → httpcore → the socket or ssl error)
and, where the error alone cannot tell (a connection closed without an answer), the result of
``probe``, which looks once at what the port speaks. ``probe`` is the I/O, a few bytes on one
short-lived socket; it sends nothing of the request.

Names under ``.invalid`` (RFC 6761) are never looked up: ``UNRESOLVABLE`` mounts a transport
that fails them at once, so a mistyped example address fails fast, also off-line.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
from anyio import to_thread

PROBE_TIMEOUT = 3.0
E = TypeVar("E", bound=BaseException)
_NOT_TLS = {  # OpenSSL's reasons when the peer's first bytes are not a TLS record
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
}
# What TLS servers answer to a plain HTTP request on their port (Go's net/http: Caddy; nginx).
_TLS_PORT_ANSWERS = ("HTTP request to an HTTPS server", "plain HTTP request was sent to HTTPS port")


class Speaks(StrEnum):
    TLS = "tls"
    HTTP = "http"
    OTHER = "other"  # answered, but neither TLS nor HTTP
    SILENT = "silent"  # connections are taken, but nothing comes back
    NOTHING = "nothing"  # nothing to connect to


Probe = Callable[[str, int], Speaks]


def endpoint(url: str | httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) of an address, with the scheme's default port."""
    parts = urlsplit(str(url))
    scheme = parts.scheme or "https"
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, parts.hostname or "", port or (443 if scheme == "https" else 80)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _find(chain: list[BaseException], kind: type[E]) -> E | None:
    return next((e for e in chain if isinstance(e, kind)), None)


def _closed(chain: list[BaseException]) -> bool:
    """The peer closed or reset the connection without an HTTP answer."""
    if any(isinstance(e, ConnectionResetError | BrokenPipeError) for e in chain):
        return True
    return any(isinstance(e, httpx.RemoteProtocolError | httpx.ReadError) for e in chain)


def describe(exc: BaseException, url: str | httpx.URL, probe: Probe | None = None) -> str:
    """A short, actionable reason why the request to ``url`` failed."""
    scheme, host, port = endpoint(url)
    where = f"{host}:{port}"
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (
            f"the TLS certificate could not be verified at {where} (for a sector's own CA, set "
            "PUBLIEKSDATA_NODE_AGGREGATOR_CA_FILE)"
        )
    if _find(chain, socket.gaierror) is not None:
        return (
            f"host not found: the name {host} does not resolve (check the address for typing "
            "errors, and this computer's DNS)"
        )
    if _find(chain, ConnectionRefusedError) is not None:
        return (
            f"connection refused by {where}: nothing listens there (is the aggregator running, "
            "and is the port right?)"
        )
    failure = _find(chain, ssl.SSLError)
    if failure is not None and (failure.reason or "") in _NOT_TLS:
        speaks = probe(host, port) if probe is not None else Speaks.OTHER
        if speaks is Speaks.HTTP:
            return (
                f"TLS expected but plain HTTP answered at {where}: this port serves http://, "
                "not https:// (is it the port of the HTTPS proxy?)"
            )
        return f"TLS expected but {where} answered something else: wrong port?"
    if isinstance(exc, httpx.ConnectTimeout) or _find(chain, TimeoutError) is not None:
        return f"no answer from {where} in time: a firewall on the way, or a wrong address or port"
    if isinstance(exc, httpx.TimeoutException):
        return f"{where} did not answer in time"
    if _closed(chain):
        speaks = probe(host, port) if probe is not None else Speaks.HTTP
        if scheme == "http" and speaks is Speaks.TLS:
            return f"{where} speaks TLS but the address says http://: use https://"
        if speaks is Speaks.OTHER:
            return f"{where} answered, but not with HTTP or TLS: wrong port?"
        if speaks is Speaks.NOTHING:
            return f"{where} closed the connection and no longer takes any"
        return f"{where} closed the connection without an answer"
    return f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__


async def explain(exc: BaseException, url: str | httpx.URL) -> str:
    """:func:`describe` from async code: the look at the port (:func:`probe`), when the error
    alone cannot tell, runs in a worker thread."""
    return await to_thread.run_sync(describe, exc, url, probe)


def describe_answer(response: httpx.Response) -> str | None:
    """A reason for an HTTP answer that means the address is wrong, or None."""
    if response.status_code == 400 and any(s in response.text for s in _TLS_PORT_ANSWERS):
        _, host, port = endpoint(response.request.url)
        return f"{host}:{port} speaks TLS but the address says http://: use https://"
    return None


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> Speaks:
    """What the port speaks: first whether a plain ``HEAD`` gets an HTTP status line (any HTTP
    server answers at once), else whether a TLS handshake succeeds (not verified: only whether
    it is TLS at all)."""
    first = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.sendall(b"HEAD / HTTP/1.0\r\nHost: " + host.encode("idna") + b"\r\n\r\n")
            first = raw.recv(5)
    except (OSError, UnicodeError) as exc:
        if isinstance(exc, ConnectionRefusedError | socket.gaierror | UnicodeError):
            return Speaks.NOTHING
    if first == b"HTTP/":
        return Speaks.HTTP
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host or None),
        ):
            return Speaks.TLS
    except ssl.SSLEOFError:  # closed at once, again
        return Speaks.OTHER if first else Speaks.SILENT
    except ssl.SSLError:
        return Speaks.OTHER
    except OSError:
        return Speaks.OTHER if first else Speaks.SILENT


class _Unresolvable(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Fails every request at once, as an unknown name would (RFC 6761: ``.invalid``)."""

    def _fail(self, request: httpx.Request) -> httpx.ConnectError:
        error = httpx.ConnectError("Name or service not known", request=request)
        error.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return error

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise self._fail(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise self._fail(request)


UNRESOLVABLE: dict[str, _Unresolvable] = {"all://*.invalid": _Unresolvable()}
