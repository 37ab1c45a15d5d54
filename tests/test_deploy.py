"""The deployment files in deploy/ are checked as far as this machine can: the systemd units
pass ``systemd-analyze verify`` (apart from the program path, which exists only once installed),
the compose files parse and name only real settings, and the Containerfiles run as a non-root
user with a healthcheck on the service's own port and readiness endpoint. No container is built
or run here: the machines have no container engine (docs/how-to/deploy-*.md say so)."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from aggregator.settings import AggregatorSettings
from keyholder.settings import KeyholderSettings
from node.settings import NodeSettings

DEPLOY = Path(__file__).parents[1] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service")) + sorted(
    (DEPLOY / "systemd").glob("*.timer")
)


def _setting_names() -> set[str]:
    names = {f"PUBLIEKSDATA_NODE_{n.upper()}" for n in NodeSettings.model_fields}
    names |= {f"PUBLIEKSDATA_AGGREGATOR_{n.upper()}" for n in AggregatorSettings.model_fields}
    names |= {f"PUBLIEKSDATA_KEYHOLDER_{n.upper()}" for n in KeyholderSettings.model_fields}
    return names | {"PUBLIEKSDATA_LOG_FORMAT", "PUBLIEKSDATA_LOG_LEVEL"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_units_verify(unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/opt/publieksdata/bin/publieksdata is not executable" not in line
    ]
    assert problems == []


@pytest.mark.parametrize(
    "unit",
    [
        "publieksdata-node.service",
        "publieksdata-aggregator.service",
        "publieksdata-keyholder.service",
    ],
)
def test_service_units_are_hardened_and_migrate_on_start(unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text("utf-8")
    for option in ("User=publieksdata", "NoNewPrivileges=yes", "ProtectSystem=strict",
                   "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=",
                   "SystemCallFilter=@system-service"):  # fmt: skip
        assert option in text, option
    assert re.search(r"^ExecStartPre=.* db upgrade$", text, re.M)
    for name in re.findall(r"Environment=(PUBLIEKSDATA_\w+)=", text):
        assert name in _setting_names() | {
            "PUBLIEKSDATA_NODE_HOME",
            "PUBLIEKSDATA_AGGREGATOR_HOME",
        }, name


@pytest.mark.parametrize("name", ["aggregator.yml", "node.yml"])
def test_compose_files_parse_and_name_real_settings(name: str) -> None:
    document = yaml.safe_load((DEPLOY / "compose" / name).read_text("utf-8"))
    services = document["services"]
    app = services["aggregator" if name == "aggregator.yml" else "node"]
    assert app["build"]["dockerfile"].startswith("deploy/containers/Containerfile.")
    assert (DEPLOY.parent / app["build"]["dockerfile"]).exists()
    unknown = [k for k in app["environment"] if k.startswith("PUBLIEKSDATA_")]
    unknown = [k for k in unknown if k not in _setting_names()]
    assert unknown == []
    assert services["db"]["image"].endswith("postgres:15")
    if name == "node.yml":  # the node's port is published on the host's loopback only
        assert all(p.startswith("127.0.0.1:") for p in app["ports"])
    else:
        proxy = services["proxy"]
        assert any("Caddyfile" in v for v in proxy["volumes"])


@pytest.mark.parametrize("service", ["node", "aggregator"])
def test_containerfiles_are_non_root_with_a_readiness_healthcheck(service: str) -> None:
    text = (DEPLOY / "containers" / f"Containerfile.{service}").read_text("utf-8")
    assert re.search(r"^USER publieksdata$", text, re.M)
    settings = NodeSettings if service == "node" else AggregatorSettings
    port = settings.model_fields["port"].default
    assert f"EXPOSE {port}" in text
    assert f"http://127.0.0.1:{port}/v1/ready" in text
    assert "db upgrade && exec publieksdata" in text


@pytest.mark.parametrize("service", ["node", "aggregator"])
def test_containerfiles_copy_every_package_the_command_imports(service: str) -> None:
    """The image installs the project from the copied folders: every package pyproject names
    must be copied, or ``publieksdata`` fails at start (it imports all of them)."""
    text = (DEPLOY / "containers" / f"Containerfile.{service}").read_text("utf-8")
    pyproject = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text("utf-8"))
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        name = pattern.rstrip("*")
        assert re.search(rf"^COPY {name} \./{name}$", text, re.M), name


@pytest.mark.parametrize(
    ("name", "settings", "prefix"),
    [
        ("node.env", NodeSettings, "PUBLIEKSDATA_NODE_"),
        ("aggregator.env", AggregatorSettings, "PUBLIEKSDATA_AGGREGATOR_"),
        ("keyholder.env", KeyholderSettings, "PUBLIEKSDATA_KEYHOLDER_"),
    ],
)
def test_env_files_list_every_setting_with_its_default(
    name: str, settings: type, prefix: str
) -> None:
    lines = (DEPLOY / "env" / name).read_text("utf-8").splitlines()
    listed = dict(line[1:].split("=", 1) for line in lines if line.startswith(f"#{prefix}"))
    fields = {f for f in settings.model_fields if f != "home"}  # home: set by the unit
    assert set(listed) == {prefix + f.upper() for f in fields}
    for field_name in fields:
        default = settings.model_fields[field_name].default
        shown = listed[prefix + field_name.upper()]
        if default is None:
            assert shown == ""
        elif isinstance(default, bool):
            assert shown == str(default).lower()
        else:
            assert shown == str(default), field_name


def test_the_aggregator_behind_the_shipped_proxy_trusts_exactly_that_proxy() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "aggregator.yml").read_text("utf-8"))
    services = compose["services"]
    proxy_address = services["proxy"]["networks"]["edge"]["ipv4_address"]
    trusted = services["aggregator"]["environment"]["PUBLIEKSDATA_AGGREGATOR_FORWARDED_ALLOW_IPS"]
    assert trusted == proxy_address
    assert "edge" in services["aggregator"]["networks"]
    assert "edge" not in services["db"]["networks"]
    subnet = compose["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy_address) in ipaddress.ip_network(subnet)
    # The image on its own trusts the same address (never 127.0.0.1: not a proxy in a container).
    image = (DEPLOY / "containers" / "Containerfile.aggregator").read_text("utf-8")
    assert f"PUBLIEKSDATA_AGGREGATOR_FORWARDED_ALLOW_IPS={proxy_address} " in image
    AggregatorSettings(forwarded_allow_ips=trusted)  # a valid value
    # A proxy on the same machine (systemd unit) connects from loopback, the default.
    default = AggregatorSettings.model_fields["forwarded_allow_ips"].default
    assert "127.0.0.1" in default.split(",")
    unit = (DEPLOY / "systemd" / "publieksdata-aggregator.service").read_text("utf-8")
    assert "PUBLIEKSDATA_AGGREGATOR_HOST" not in unit  # so it listens on 127.0.0.1


def test_forwarded_allow_ips_refuses_what_is_not_an_address() -> None:
    with pytest.raises(ValueError, match="not an address or network"):
        AggregatorSettings(forwarded_allow_ips="127.0.0.1, caddy")
    assert AggregatorSettings(forwarded_allow_ips="10.0.0.0/8, ::1").forwarded_allow_ips


def test_the_nginx_body_limit_is_the_aggregators() -> None:
    text = (DEPLOY / "proxy" / "nginx-aggregator.conf").read_text("utf-8")
    match = re.search(r"client_max_body_size (\d+)m;(.*)", text)
    assert match is not None
    default = AggregatorSettings.model_fields["max_body_bytes"].default
    assert int(match.group(1)) * 1024 * 1024 == default
    assert "lower" not in match.group(2)
