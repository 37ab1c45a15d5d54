"""How the node talks to its aggregator: HTTPS with certificate checks, never plain HTTP to
another machine.

* ``check_aggregator_url``: ``https://`` always; ``http://`` only to this machine (loopback: the
  demo, tests) unless ``PUBLIEKSDATA_NODE_INSECURE_HTTP`` is set, so a mistyped address cannot
  send signed answers across a network in the clear.
* ``tls_verify``: the system's CA store by default (certifi through httpx), or only the CA in
  ``PUBLIEKSDATA_NODE_AGGREGATOR_CA_FILE`` (a sector body's private CA: pinning it means no
  public CA can stand in for the aggregator).
"""

from __future__ import annotations

import ssl
from ipaddress import ip_address
from urllib.parse import urlsplit

import httpx

from node.settings import NodeSettings


class InsecureAggregatorURL(ValueError):
    """The aggregator address would send the node's messages unencrypted over a network."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_aggregator_url(url: str, settings: NodeSettings) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme != "http":
        raise InsecureAggregatorURL("the aggregator address must start with https://")
    if is_loopback(parts.hostname) or settings.insecure_http:
        return
    raise InsecureAggregatorURL(
        f"refusing plain http:// to {parts.hostname}: use https://, or set "
        "PUBLIEKSDATA_NODE_INSECURE_HTTP=true (only for a test network)"
    )


def tls_verify(settings: NodeSettings) -> ssl.SSLContext | bool:
    if settings.aggregator_ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(settings.aggregator_ca_file))


def aggregator_client(settings: NodeSettings, **options: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=tls_verify(settings), **options)  # type: ignore[arg-type]


def describe_transport_error(exc: BaseException) -> str:
    """A short reason for a failed connection; certificate problems say what to do."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (
            "the aggregator's TLS certificate could not be verified (for a sector's own CA, set "
            "PUBLIEKSDATA_NODE_AGGREGATOR_CA_FILE)"
        )
    return type(exc).__name__
