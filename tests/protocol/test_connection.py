"""Connection errors say what is likely wrong, each diagnosed against a real local socket: an
unused port, a name that cannot exist, a plain-HTTP server asked for https, a TLS server asked
over http, something that is not HTTP at all; and the analyst client sends a long-poll again
when its kept-alive connection was closed under it, but reports a server that is really gone."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aggregator.client import AsyncClient, Client, Unreachable
from node.cli import app as node_cli
from node.transport import aggregator_client, describe_transport_error
from protocol.connection import UNRESOLVABLE, Speaks, describe, describe_answer, probe
from protocol.results import NodeStatus, RoundState
from tests.aggregator.test_client import make_result
from tests.e2e.test_tls import make_ca
from tests.nodekit import make_node

pytestmark = pytest.mark.anyio
Handler = Callable[[socket.socket, int], None]  # (connection, how many came before it)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Server:
    """A real server on a loopback port; ``handler`` talks to each connection in turn."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        count = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.open.append(conn)
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                self.handler(conn, count)
            except OSError:
                pass  # the client went away, or spoke something else
            finally:
                conn.close()
            count += 1

    def stop(self) -> None:
        """Gone: nothing listens any more, and open connections end."""
        for sock in (self.listener, *self.open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.thread.join(timeout=10)


@contextmanager
def server(handler: Handler, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    running = Server(handler, tls)
    try:
        yield running
    finally:
        running.stop()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def answer(conn: socket.socket, body: bytes = b"[]") -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def http_server(conn: socket.socket, _count: int) -> None:
    """Answers whatever arrives at once, as HTTP servers do (with a 400 for garbage)."""
    while conn.recv(65536):
        answer(conn)


def unused_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def failure(url: str) -> BaseException:
    with httpx.Client(mounts=UNRESOLVABLE) as client:
        try:
            client.get(url)
        except httpx.HTTPError as exc:
            return exc
    raise AssertionError(f"{url} answered")


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    authority, cert, key = make_ca(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return authority, context


# -- the diagnoses --------------------------------------------------------------------------------


async def test_an_unused_port_is_connection_refused() -> None:
    url = f"https://127.0.0.1:{unused_port()}"
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.get(url)
    reason = await describe_transport_error(raised.value, url)
    assert reason.startswith("connection refused by 127.0.0.1:")
    assert "is the aggregator running, and is the port right?" in reason


async def test_a_name_that_cannot_exist_is_host_not_found_without_asking_dns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_lookups(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("a .invalid name was looked up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)
    settings, _ = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    async with aggregator_client(settings) as client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.get("https://nohost.invalid/v1/health")
    reason = await describe_transport_error(raised.value, "https://nohost.invalid")
    assert reason.startswith("host not found: the name nohost.invalid does not resolve")
    with Client("https://nohost.invalid", "token") as analyst, pytest.raises(Unreachable) as gone:
        analyst.nodes()
    assert "aggregator unreachable at https://nohost.invalid: host not found" in str(gone.value)


def test_a_real_lookup_failure_is_host_not_found_too() -> None:
    error = httpx.ConnectError("[Errno -2] Name or service not known")
    error.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert describe(error, "https://aggregator.sector.example").startswith("host not found")


def test_tls_expected_but_plain_http_answered() -> None:
    with server(http_server) as running:
        port = running.port
        url = f"https://127.0.0.1:{port}/"
        reason = describe(failure(url), url, probe)
    assert reason.startswith(f"TLS expected but plain HTTP answered at 127.0.0.1:{port}")


def test_a_tls_server_asked_over_plain_http(ca: tuple[Path, ssl.SSLContext]) -> None:
    authority, context = ca
    with server(http_server, tls=context) as running:
        port = running.port
        assert probe("127.0.0.1", port) is Speaks.TLS
        url = f"http://127.0.0.1:{port}/"
        reason = describe(failure(url), url, probe)
        assert reason == f"127.0.0.1:{port} speaks TLS but the address says http://: use https://"
        # The same server over https answers (so the diagnosis was about the address only).
        trusted = ssl.create_default_context(cafile=str(authority))
        with httpx.Client(verify=trusted) as client:
            assert client.get(f"https://127.0.0.1:{port}/").status_code == 200


def test_a_tls_proxy_that_answers_plain_http_with_400() -> None:
    request = httpx.Request("GET", "http://aggregator.sector.example:443/v1/enrol")
    caddy = httpx.Response(400, text="Client sent an HTTP request to an HTTPS server.\n")
    caddy.request = request
    assert describe_answer(caddy) == (
        "aggregator.sector.example:443 speaks TLS but the address says http://: use https://"
    )
    other = httpx.Response(400, json={"code": "malformed_json"})
    other.request = request
    assert describe_answer(other) is None


def test_something_that_is_not_http_is_a_wrong_port() -> None:
    def ssh(conn: socket.socket, _count: int) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.recv(1024)

    with server(ssh) as running:
        port = running.port
        for scheme, expected in (
            ("http", f"127.0.0.1:{port} answered, but not with HTTP or TLS: wrong port?"),
            ("https", f"TLS expected but 127.0.0.1:{port} answered something else: wrong port?"),
        ):
            url = f"{scheme}://127.0.0.1:{port}/"
            assert describe(failure(url), url, probe) == expected


def test_node_join_says_what_is_wrong(tmp_path: Path) -> None:
    settings, _ = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    port = unused_port()
    result = CliRunner().invoke(
        node_cli,
        [
            "join",
            f"http://127.0.0.1:{port}",
            "--invite",
            "AAAAA-AAAAA-AAAAA-AAAAA",
            "--home",
            str(settings.home),
        ],
    )
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert f"cannot reach the aggregator at http://127.0.0.1:{port}: connection refused" in text


# -- the analyst client: a closed kept-alive connection is retried, a gone server is not ---------


def rounds_server(results: list[bytes]) -> Handler:
    """Answers the first long-poll, then closes that kept-alive connection when the next one
    arrives on it; a new connection gets the rest."""

    def handle(conn: socket.socket, count: int) -> None:
        if count == 0:
            read_request(conn)
            answer(conn, results[0])
            read_request(conn)  # the next long-poll, on the same connection: closed unanswered
            return
        for body in results[1:]:
            if not read_request(conn):
                return
            answer(conn, body)

    return handle


def two_results() -> list[bytes]:
    open_round = make_result((NodeStatus.ANSWERED, NodeStatus.PENDING), state=RoundState.OPEN)
    closed = make_result()
    return [open_round.model_dump_json().encode(), closed.model_dump_json().encode()]


def test_the_client_sends_a_long_poll_again_when_its_connection_was_closed() -> None:
    with (
        server(rounds_server(two_results())) as running,
        Client(f"http://127.0.0.1:{running.port}", "token") as client,
    ):
        result = client.wait("r1")
    assert result.closed


async def test_the_async_client_sends_a_long_poll_again_too() -> None:
    with server(rounds_server(two_results())) as running:
        async with AsyncClient(f"http://127.0.0.1:{running.port}", "token") as client:
            result = await client.wait("r1")
    assert result.closed


def test_a_server_that_is_really_gone_is_unreachable() -> None:
    with server(http_server) as running:
        port = running.port
        with Client(f"http://127.0.0.1:{port}", "token") as client:
            assert client.rounds() == []
            running.stop()  # gone: its kept-alive connection ends too, nothing listens
            with pytest.raises(Unreachable) as raised:
                client.rounds()
    text = str(raised.value)
    assert f"aggregator unreachable at http://127.0.0.1:{port}: connection refused" in text


def test_a_server_that_closes_every_connection_is_unreachable_after_two_retries() -> None:
    seen: list[int] = []

    def hang_up(conn: socket.socket, count: int) -> None:
        if conn.recv(65536).startswith(b"GET /v1/rounds"):  # not the diagnosis' look
            seen.append(count)

    with (
        server(hang_up) as running,
        Client(f"http://127.0.0.1:{running.port}", "token") as client,
        pytest.raises(Unreachable) as raised,
    ):
        client.rounds()
    assert seen == [0, 1, 2]  # the first try and two more
    assert "closed the connection without an answer" in str(raised.value)
