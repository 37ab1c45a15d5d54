"""A federation across separate network hosts: one aggregator and three nodes, each in a network
namespace of its own (``ip netns``), joined by veth pairs on a bridge, with addresses only inside
the namespaces this test creates. They talk HTTPS with a test CA that every node pins.

The test enrols the nodes (invite codes, real ``node join`` over the network), runs a secure
round, cuts one node's link in the middle of it (the round completes at its deadline with that
node timed out and the others summed), publishes a release and reads its page from a node's host.
It runs with the aggregator on SQLite, on PostgreSQL (over the server's Unix socket, which
network namespaces do not separate), and as two aggregator processes on one PostgreSQL database
behind nginx (Debian's nginx-light), which terminates TLS on the aggregator's host and spreads
the nodes over both processes.

It needs root (network namespaces). Without it the test skips with the reason, unless
PUBLIEKSDATA_REQUIRE_NETNS=1 (set by .ci/run), in which case it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from aggregator.services.tokens import Role
from node.settings import NodeSettings
from protocol.results import NodeStatus, RoundResult, RoundState
from publieksdata.demo import demo_recipe
from tests.conftest import POSTGRES_URL, postgres_unavailable
from tests.e2e.test_tls import make_ca
from tests.factories import Row
from tests.fedkit import make_aggregator, make_token, node_with_rows
from tests.optional import NETNS, POSTGRES, need

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
SUBNET = "10.77.{net}"
PORT = 8443


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("curl") is None:
        return "the ip and curl commands are needed"
    probe = f"pdprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


@pytest.fixture(scope="module")
def netns_ok() -> None:
    need(NETNS, _netns_unavailable())


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class Network:
    """A bridge in the root namespace (no address there) and one namespace per host."""

    tag: str
    net: int
    hosts: dict[str, str] = field(default_factory=dict)  # name → namespace
    addresses: dict[str, str] = field(default_factory=dict)  # name → IPv4
    links: dict[str, str] = field(default_factory=dict)  # name → root-side veth

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def create(self, names: list[str]) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "link", "set", self.bridge, "up")
        for i, name in enumerate(names, start=1):
            ns = f"{self.tag}{name}"
            outside, inside = f"{self.tag}{i}o", f"{self.tag}{i}i"
            address = f"{SUBNET.format(net=self.net)}.{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            sh("ip", "link", "set", inside, "netns", ns)
            sh("ip", "link", "set", outside, "master", self.bridge)
            sh("ip", "link", "set", outside, "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            sh("ip", "-n", ns, "link", "set", inside, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.hosts[name], self.addresses[name], self.links[name] = ns, address, outside

    def cut(self, name: str) -> None:
        sh("ip", "link", "set", self.links[name], "down")

    def destroy(self) -> None:
        for ns in self.hosts.values():
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(
            ["ip", "link", "del", self.bridge],
            check=False,
            capture_output=True,
        )


@dataclass
class Host:
    network: Network
    name: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.network.hosts[self.name], *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            check=False,
            timeout=90,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args} on {self.name}: {result.stdout}\n{result.stderr}")
        return result

    def publieksdata(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "publieksdata", *args, check=check)

    def serve(self, log: Path, *args: str) -> None:
        self.spawn(log, sys.executable, "-m", "publieksdata", *args)

    def spawn(self, log: Path, *args: str) -> None:
        handle = log.open("wb")
        self.logs.append(handle)
        self.processes.append(
            subprocess.Popen(
                self.command(*args),
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        )

    def curl(self, *args: str) -> Any:
        result = self.run("curl", "-sS", "--fail-with-body", "--max-time", "40", *args)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for handle in self.logs:
            handle.close()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL, reached over its Unix socket."""
    need(POSTGRES, postgres_unavailable())
    schema = f"ns_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def recipe(result: RoundResult) -> dict[str, object]:
    """The demo's release, limited to the breakdowns of the 'volume' report."""
    full = demo_recipe(result)
    tables = [t for t in full["tables"] if t["table_id"] in ("visits-month", "visits-artform")]  # type: ignore[attr-defined]
    return {**full, "release_id": "netns-2025", "tables": tables}


NGINX = """
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream aggregators {{
        server 127.0.0.1:{first};
        server 127.0.0.1:{second};
        keepalive 16;
    }}
    server {{
        listen {address}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 2m;
        location / {{
            proxy_pass http://aggregators;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_read_timeout 90s;
            proxy_buffering off;
        }}
    }}
}}
"""


def _nginx_or_skip() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(nginx).exists():
        return nginx
    need(NETNS, "nginx is not installed (Debian package nginx-light)")
    raise AssertionError("unreachable")  # need() skips or fails


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "two-processes-behind-nginx"])
def test_a_federation_across_network_namespaces(
    netns_ok: None, tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """With "two-processes-behind-nginx": two aggregator processes on one PostgreSQL database,
    on the aggregator host's loopback, behind nginx, which terminates TLS and spreads the
    requests over both."""
    agg_url = None
    two = database == "two-processes-behind-nginx"
    nginx = _nginx_or_skip() if two else ""
    if database != "sqlite":
        schema = request.getfixturevalue("postgres_schema")
        agg_url = (
            "postgresql+psycopg://postgres@/test?host=/var/run/postgresql"
            f"&options=-csearch_path%3D{schema}"
        )
    network = Network(tag=f"pd{uuid.uuid4().hex[:4]}", net=100 + (os.getpid() % 100))
    hosts: list[Host] = []
    try:
        network.create(["agg", "n1", "n2", "n3"])
        agg_ip = network.addresses["agg"]
        base = f"https://{agg_ip}:{PORT}"
        certs = tmp_path / "certs"
        certs.mkdir()
        ca, cert, key = make_ca(certs, ip=agg_ip)
        tls = {} if two else {"tls_certfile": cert, "tls_keyfile": key}
        agg = make_aggregator(tmp_path / "aggregator", agg_url, min_quorum=2, **tls)
        admin = asyncio.run(make_token(agg, Role.ADMIN, "beheer"))
        analyst = asyncio.run(make_token(agg, Role.ANALYST, "analist"))
        env = {"PUBLIEKSDATA_LOG_LEVEL": "warning", "SSL_CERT_FILE": str(ca)}
        aggregator = Host(network, "agg", env)
        hosts.append(aggregator)
        if two:
            for i, local in enumerate((PORT + 1, PORT + 2)):
                aggregator.serve(
                    tmp_path / f"aggregator-{i + 1}.log",
                    "aggregator", "serve", "--home", str(agg.home),
                    "--host", "127.0.0.1", "--port", str(local),
                )  # fmt: skip
            work = tmp_path / "nginx"
            work.mkdir()
            conf = work / "nginx.conf"
            conf.write_text(
                NGINX.format(
                    work=work,
                    first=PORT + 1,
                    second=PORT + 2,
                    address=agg_ip,
                    port=PORT,
                    cert=cert,
                    key=key,
                ),
                "utf-8",
            )
            aggregator.spawn(work / "nginx.log", nginx, "-c", str(conf), "-g", "daemon off;")
        else:
            aggregator.serve(
                tmp_path / "aggregator.log",
                "aggregator", "serve", "--home", str(agg.home), "--host", agg_ip,
                "--port", str(PORT),
            )  # fmt: skip
        _wait(
            lambda: (
                aggregator.run(
                    "curl", "-s", "--fail", "--cacert", str(ca), f"{base}/v1/ready", check=False
                ).returncode
                == 0
            ),
            60,
            "the aggregator",
        )
        nodes: list[NodeSettings] = []
        for i, name in enumerate(["n1", "n2", "n3"]):
            rows = [
                Row(person=100 * i + p, event_date=date(2025, 1 + p % 12, 5)) for p in range(1, 13)
            ]
            settings, engine = node_with_rows(
                tmp_path / name,
                f"Instelling {name}",
                rows,
                ref_offset=100 * i,
                insecure_http=False,
                aggregator_ca_file=ca,
                poll_wait_seconds=2.0,
            )
            engine.dispose()
            invite = aggregator.publieksdata(
                "aggregator", "invite", "--name", settings.institution, "--home", str(agg.home)
            )
            # The code is on its own line after "Invite for …:".
            code = invite.stdout.split(":\n", 1)[1].split()[0]
            host = Host(network, name, env)
            hosts.append(host)
            joined = host.publieksdata(
                "node", "join", base, "--invite", code, "--home", str(settings.home), check=False
            )
            assert joined.returncode == 0, joined.stdout + joined.stderr
            host.serve(tmp_path / f"{name}.log", "node", "serve", "--home", str(settings.home))
            nodes.append(settings)
        auth = ["-H", f"authorization: Bearer {analyst}", "--cacert", str(ca)]

        def connected() -> bool:
            listed = aggregator.curl(*auth, f"{base}/v1/nodes")
            return sum(1 for n in listed if n["connected"] and n["budget"]) == 3

        _wait(connected, 60, "three connected nodes")
        # Node 3's link goes down while it is connected and waiting in its long poll, just
        # before the round: it cannot collect or answer anything of it, however fast the others
        # are (a cut after the POST raced the round, which can finish within a second).
        network.cut("n3")
        created = aggregator.curl(
            *auth,
            "-H", "content-type: application/json",
            "-d", json.dumps({"report": {"name": "volume", "year": 2025, "rho": 0.05},
                              "deadline_seconds": 40}),
            f"{base}/v1/rounds",
        )  # fmt: skip
        assert created["mode"] == "secure"
        # 40 s: n1 and n2 accept at once; ANNOUNCE ends at its approval deadline (the round's
        # 40 s), when n3 has not accepted, and the protocol phases go on without it. The wait
        # below ends when the round closes.
        until = time.monotonic() + 150  # a guard against a hanging test, not a deadline
        while True:
            result = RoundResult.model_validate(
                aggregator.curl(*auth, f"{base}/v1/rounds/{created['round_id']}?wait=10")
            )
            if result.state is RoundState.CLOSED or time.monotonic() > until:
                break
        assert result.state is RoundState.CLOSED
        assert result.failure is None, result.failure
        status = {n.institution: n.status for n in result.coverage.nodes}
        assert status == {
            "Instelling n1": NodeStatus.ANSWERED,
            "Instelling n2": NodeStatus.ANSWERED,
            "Instelling n3": NodeStatus.TIMED_OUT,
        }
        published = aggregator.curl(
            "-H", f"authorization: Bearer {admin}", "--cacert", str(ca),
            "-H", "content-type: application/json",
            "-d", json.dumps({"recipe": recipe(result)}),
            f"{base}/v1/releases",
        )  # fmt: skip
        page = hosts[1].run(
            "curl", "-sS", "--fail", "--cacert", str(ca),
            f"{base}/nl/releases/{published['slug']}",
        ).stdout  # fmt: skip
        assert "Instelling n3" in page  # listed as missing from the figures
        if two:  # nginx spread the nodes' polls over both processes
            for local in (PORT + 1, PORT + 2):
                metrics = aggregator.run(
                    "curl", "-sS", "--fail", f"http://127.0.0.1:{local}/metrics"
                ).stdout
                polls = [
                    line
                    for line in metrics.splitlines()
                    if line.startswith(
                        "publieksdata_aggregator_http_request_duration_seconds_count"
                    )
                    and 'route="/v1/node/poll"' in line
                ]
                assert polls and float(polls[0].split()[-1]) > 0, local
        assert published["tables"] == 2
    finally:
        for host in hosts:
            host.stop()
        network.destroy()
