"""Creating the aggregator's home directory: its signing key, settings file and database."""

from __future__ import annotations

import json
import os
from pathlib import Path

from aggregator.settings import ENV_FILE, AggregatorSettings
from aggregator.storage.db import upgrade
from protocol.signing import SigningKey


class HomeExists(RuntimeError):
    """The home directory already holds an aggregator."""


class KeyFileError(RuntimeError):
    """The signing key file is missing or damaged."""


def create_signing_key(path: Path) -> SigningKey:
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_pem())
    return key


def load_signing_key(path: Path) -> SigningKey:
    try:
        return SigningKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(
            f"the signing key {path} is missing; run 'publieksdata aggregator init' first"
        ) from None
    except ValueError:
        raise KeyFileError(f"the signing key {path} is damaged") from None


def init_home(home: Path, name: str, database_url: str | None = None) -> AggregatorSettings:
    """Create an aggregator home; refuses to touch an existing one (its key must not change)."""
    home = home.resolve()
    probe = AggregatorSettings(home=home)
    if probe.signing_key_path.exists():
        raise HomeExists(f"{home} already holds an aggregator; its key is left untouched")
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        "# publieksdata aggregator settings; names are in docs/reference/configuration.md",
        f"PUBLIEKSDATA_AGGREGATOR_NAME={json.dumps(name, ensure_ascii=False)}",
    ]
    if database_url:
        lines.append(f"PUBLIEKSDATA_AGGREGATOR_DATABASE_URL={database_url}")
    (home / ENV_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = AggregatorSettings.load(home)
    create_signing_key(settings.signing_key_path)
    upgrade(settings.database_url)
    return settings
