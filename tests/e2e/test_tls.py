"""TLS between node and aggregator, with real processes on loopback: the aggregator serves HTTPS
itself (uvicorn's TLS) with a certificate from a test CA; a node that pins that CA joins and
answers a round over HTTPS; a node that does not is refused with a clear message about the
certificate; and plain http:// to another machine is refused before anything is sent."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from aggregator.services.tokens import Role
from node.cli import app as node_cli
from node.settings import NodeSettings
from node.transport import InsecureAggregatorURL, check_aggregator_url
from protocol.results import NodeStatus, RoundResult, RoundState
from publieksdata.processes import Service, free_port, start
from tests.factories import Row
from tests.fedkit import make_aggregator, make_token, node_with_rows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
CHILD_ENV = {"PUBLIEKSDATA_LOG_LEVEL": "warning"}
runner = CliRunner()


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_ca(directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for ``ip`` and localhost: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "publieksdata test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aggregator.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(ip))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _pem(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        _pem(directory / "server.pem", cert.public_bytes(serialization.Encoding.PEM)),
        _pem(
            directory / "server.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
    )


def test_plain_http_to_another_machine_is_refused(tmp_path: Path) -> None:
    settings = NodeSettings(home=tmp_path)
    check_aggregator_url("https://aggregator.example.nl", settings)
    check_aggregator_url("http://127.0.0.1:8480", settings)
    check_aggregator_url("http://localhost:8480", settings)
    with pytest.raises(InsecureAggregatorURL, match="refusing plain http"):
        check_aggregator_url("http://192.0.2.7:8480", settings)
    check_aggregator_url("http://192.0.2.7:8480", NodeSettings(home=tmp_path, insecure_http=True))
    node, engine = node_with_rows(tmp_path / "node", "Museum", [], insecure_http=False)
    engine.dispose()
    result = runner.invoke(
        node_cli,
        ["join", "http://192.0.2.7:8480", "--invite", "x" * 20, "--home", str(node.home)],
    )
    assert result.exit_code == 1 and "refusing plain http" in " ".join(result.output.split())


def test_a_federation_over_https_with_a_pinned_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path)
    agg = make_aggregator(
        tmp_path / "aggregator", None, min_quorum=1, tls_certfile=cert, tls_keyfile=key
    )
    admin = asyncio.run(make_token(agg, Role.ADMIN, "beheer"))
    analyst = asyncio.run(make_token(agg, Role.ANALYST, "analist"))
    port = free_port()
    aggregator: Service = start(
        "aggregator",
        ["aggregator", "serve", "--home", str(agg.home), "--port", str(port)],
        port,
        tmp_path / "aggregator.log",
        CHILD_ENV,
    )
    url = f"https://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=str(ca))
    services = [aggregator]
    try:
        aggregator.url = url
        aggregator.wait_healthy(60, verify=verify)
        invite = httpx.post(
            f"{url}/v1/admin/invites",
            json={"institution": "Museum"},
            headers={"authorization": f"Bearer {admin}"},
            verify=verify,
        ).json()["code"]
        rows = [Row(person=p, event_date=date_2025(p)) for p in range(1, 6)]
        # Without the CA pinned, the certificate cannot be verified: a clear refusal.
        unpinned, engine = node_with_rows(tmp_path / "unpinned", "Museum", rows)
        engine.dispose()
        refused = runner.invoke(
            node_cli, ["join", url, "--invite", invite, "--home", str(unpinned.home)]
        )
        assert refused.exit_code == 1
        assert "TLS certificate could not be verified" in " ".join(refused.output.split())
        # Pinned: joins, connects out over HTTPS and answers.
        node, engine = node_with_rows(
            tmp_path / "node", "Museum", rows, aggregator_ca_file=ca, poll_wait_seconds=1.0
        )
        engine.dispose()
        joined = runner.invoke(
            node_cli, ["join", url, "--invite", invite, "--home", str(node.home)]
        )
        assert joined.exit_code == 0, joined.output
        node_port = free_port()
        node_service = start(
            "Museum",
            ["node", "serve", "--home", str(node.home), "--port", str(node_port)],
            node_port,
            tmp_path / "node.log",
            CHILD_ENV,
        )
        services.append(node_service)
        node_service.wait_healthy(60)
        created = httpx.post(
            f"{url}/v1/rounds",
            json={
                "report": {"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"},
                "deadline_seconds": 30,
            },
            headers={"authorization": f"Bearer {analyst}"},
            verify=verify,
        )
        assert created.status_code == 201, created.text
        round_id = created.json()["round_id"]
        until = time.monotonic() + 45
        while True:  # a long poll returns on any change; ask again until the round closes
            result = RoundResult.model_validate(
                httpx.get(
                    f"{url}/v1/rounds/{round_id}",
                    params={"wait": 10},
                    headers={"authorization": f"Bearer {analyst}"},
                    verify=verify,
                    timeout=20,
                ).json()
            )
            if result.state is RoundState.CLOSED or time.monotonic() > until:
                break
        assert result.state is RoundState.CLOSED
        assert result.coverage.nodes[0].status is NodeStatus.ANSWERED
        # Plain HTTP to the TLS port gets nowhere.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=3).raise_for_status()
    finally:
        for service in reversed(services):
            service.stop()


def date_2025(day: int) -> dt.date:
    return dt.date(2025, 4, day)
