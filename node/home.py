"""Creating a node's home directory: secrets, signing key, settings file and database."""

from __future__ import annotations

import json
from pathlib import Path

from node.identity import create_secret, create_signing_key
from node.settings import ENV_FILE, NodeSettings
from node.storage.db import make_engine, upgrade


class HomeExists(RuntimeError):
    """The home directory already holds a node."""


def init_home(home: Path, institution: str, database_url: str | None = None) -> NodeSettings:
    """Create a node home. Refuses to touch an existing one: its secret must never change."""
    home = home.resolve()
    settings_probe = NodeSettings(home=home)
    if settings_probe.secret_path.exists() or settings_probe.signing_key_path.exists():
        raise HomeExists(f"{home} already holds a node; its keys are left untouched")
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        "# publieksdata node settings; every name is documented in docs/reference/configuration.md",
        f"PUBLIEKSDATA_NODE_INSTITUTION={json.dumps(institution, ensure_ascii=False)}",
    ]
    if database_url:
        lines.append(f"PUBLIEKSDATA_NODE_DATABASE_URL={database_url}")
    lines += [
        "PUBLIEKSDATA_NODE_BUDGET_PERIOD=year",
        "PUBLIEKSDATA_NODE_BUDGET_RHO=1.0",
        "PUBLIEKSDATA_NODE_MAX_CELLS=20000",
        "PUBLIEKSDATA_NODE_MAX_RHO_PER_QUERY=0.5",
    ]
    (home / ENV_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = NodeSettings.load(home)
    create_secret(settings.secret_path)
    create_signing_key(settings.signing_key_path)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return settings
