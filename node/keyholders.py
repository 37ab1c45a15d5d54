"""The key holders this node is enrolled with, kept in ``<home>/keyholders.json``.

Sector pseudonymisation is on exactly when this file exists. It holds, per key holder, its
address, its Shamir index, its Ed25519 key (whose signature every answer must carry) and this
node's id there; and the key set and threshold they all share. No secret is in it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE_NAME = "keyholders.json"


class KeyholderConfigError(ValueError):
    """The key holder file is damaged or inconsistent; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class KeyholderLink:
    url: str
    name: str
    index: int
    public_key: str  # the holder's Ed25519 key, base64url
    node_id: str  # this node's id at the holder


@dataclass(slots=True)
class SectorConfig:
    key_set: str
    threshold: int
    holders: int
    links: list[KeyholderLink] = field(default_factory=list)

    def check_member(self, key_set: str, threshold: int, holders: int) -> None:
        if (key_set, threshold, holders) != (self.key_set, self.threshold, self.holders):
            raise KeyholderConfigError(
                f"this key holder serves key set {key_set} ({threshold} of {holders}); the node "
                f"is enrolled with key set {self.key_set} ({self.threshold} of {self.holders}). "
                "All key holders of a node must hold shares of the same key."
            )

    def add(self, link: KeyholderLink) -> None:
        if any(other.index == link.index for other in self.links if other.url != link.url):
            raise KeyholderConfigError(f"another key holder already has index {link.index}")
        self.links = [other for other in self.links if other.url != link.url] + [link]
        self.links.sort(key=lambda other: other.index)


def path_of(home: Path) -> Path:
    return home / FILE_NAME


def load(home: Path) -> SectorConfig | None:
    """The configuration, or None when the node has not enrolled with any key holder."""
    path = path_of(home)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return SectorConfig(
            key_set=str(doc["key_set"]),
            threshold=int(doc["threshold"]),
            holders=int(doc["holders"]),
            links=[KeyholderLink(**link) for link in doc["links"]],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyholderConfigError(f"{path} is damaged: {exc}") from None


def save(home: Path, config: SectorConfig) -> None:
    """Write the file atomically (a temporary file, then a rename)."""
    path = path_of(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def remove(home: Path, url: str) -> SectorConfig | None:
    """Forget one key holder; with the last one gone, the file is removed (sector
    pseudonymisation off)."""
    config = load(home)
    if config is None:
        return None
    base = url.rstrip("/")
    config.links = [link for link in config.links if link.url != base]
    if not config.links:
        path_of(home).unlink()
        return None
    save(home, config)
    return config
