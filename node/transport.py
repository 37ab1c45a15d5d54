"""How the node talks to its aggregator: HTTPS with certificate checks, never plain HTTP to
another machine.

* ``check_aggregator_url``: ``https://`` always; ``http://`` only to this machine (loopback: the
  demo, tests) unless ``PUBLIEKSDATA_NODE_INSECURE_HTTP`` is set, so a mistyped address cannot
  send signed answers across a network in the clear.
* ``tls_verify``: the system's CA store by default (certifi through httpx), or only the CA in
  ``PUBLIEKSDATA_NODE_AGGREGATOR_CA_FILE`` (a sector body's private CA: pinning it means no
  public CA can stand in for the aggregator).
* ``describe_transport_error``: what is likely wrong when the aggregator cannot be reached (host
  not found, connection refused, TLS against plain HTTP, a wrong port), for ``join``, ``serve``
  and key rotation.
"""

from __future__ import annotations

import ssl
from ipaddress import ip_address
from urllib.parse import urlsplit

import httpx

from node.settings import NodeSettings
from protocol.connection import UNRESOLVABLE, explain


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
    return httpx.AsyncClient(
        verify=tls_verify(settings),
        mounts=UNRESOLVABLE,
        **options,  # type: ignore[arg-type]
    )


# What is likely wrong with the connection to the aggregator (protocol.connection).
describe_transport_error = explain
