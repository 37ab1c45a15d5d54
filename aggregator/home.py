"""Creating the aggregator's home directory: its signing key, settings file and database."""

from __future__ import annotations

import json
import os
from pathlib import Path

from aggregator.settings import ENV_FILE, AggregatorSettings
from aggregator.storage.db import upgrade
from protocol.messages import KEY_ROTATION, KeyRotation
from protocol.signing import Envelope, SigningKey, public_key_to_text, sign


class HomeExists(RuntimeError):
    """The home directory already holds an aggregator."""


class KeyFileError(RuntimeError):
    """The signing key file is missing or damaged."""


def _write_key(path: Path, key: SigningKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_pem())


def create_signing_key(path: Path) -> SigningKey:
    key = SigningKey.generate()
    _write_key(path, key)
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


ROTATIONS_DIR = "key-rotations"


def rotate_signing_key(settings: AggregatorSettings) -> tuple[SigningKey, SigningKey]:
    """Replace the signing key. The old key signs a key-rotation message for the new one, which
    the aggregator hands to every node that still trusts the old key when it next polls; the old
    key is kept (retired) beside it. Returns (old, new). Takes effect when the aggregator
    restarts."""
    old = load_signing_key(settings.signing_key_path)
    new = SigningKey.generate()
    rotation = KeyRotation(
        old_key_id=old.key_id, new_key_id=new.key_id, new_key=public_key_to_text(new.public)
    )
    envelope = sign(KEY_ROTATION, rotation.model_dump(mode="json"), old)
    folder = settings.home / ROTATIONS_DIR
    folder.mkdir(exist_ok=True)
    (folder / f"{old.key_id}.json").write_text(envelope.model_dump_json(), encoding="utf-8")
    retired = settings.signing_key_path.with_name(f"retired-{old.key_id}.key")
    settings.signing_key_path.rename(retired)
    _write_key(settings.signing_key_path, new)
    return old, new


def load_rotations(settings: AggregatorSettings) -> dict[str, Envelope]:
    """Key-rotation messages by the old key id they start from."""
    folder = settings.home / ROTATIONS_DIR
    if not folder.is_dir():
        return {}
    rotations = {}
    for path in sorted(folder.glob("*.json")):
        envelope = Envelope.model_validate_json(path.read_text("utf-8"))
        rotations[KeyRotation.model_validate(envelope.payload).old_key_id] = envelope
    return rotations


def retired_keys(settings: AggregatorSettings) -> list[SigningKey]:
    """The keys this aggregator signed with before its key rotations (``retired-*.key``)."""
    found = []
    for path in sorted(settings.signing_key_path.parent.glob("retired-*.key")):
        try:
            found.append(load_signing_key(path))
        except KeyFileError:
            continue
    return found


def rotation_chain(
    rotations: dict[str, Envelope], from_key_id: str, to_key_id: str
) -> list[Envelope]:
    """The rotation messages leading from ``from_key_id`` to ``to_key_id``, or [] if none."""
    chain: list[Envelope] = []
    current = from_key_id
    while current != to_key_id and current in rotations and len(chain) < 100:
        envelope = rotations[current]
        chain.append(envelope)
        current = KeyRotation.model_validate(envelope.payload).new_key_id
    return chain if current == to_key_id else []


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
