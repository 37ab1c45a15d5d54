"""The key holders this node is enrolled with, kept in ``<home>/keyholders.json``.

Sector pseudonymisation is on exactly when this file exists. It holds, per key holder, its
address, its Shamir index, its Ed25519 key (whose signature every answer must carry), its public
share k_i·G (against which the node spot-checks its answers) and this node's id there; and the
key set, its public key k·G and the threshold they all share. No secret is in it.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protocol import oprf
from protocol.sector import key_set_id

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
    public_share: str  # k_i·G from the ceremony record, hex: what its answers are checked against
    max_batch: int


@dataclass(slots=True)
class SectorConfig:
    key_set: str
    threshold: int
    holders: int
    key_public: str  # k·G from the ceremony record, hex
    links: list[KeyholderLink] = field(default_factory=list)

    def check_member(self, key_set: str, threshold: int, holders: int, key_public: str) -> None:
        if key_set_id(key_public) != key_set:
            raise KeyholderConfigError("the key holder's key set id does not match its public key")
        if (key_set, threshold, holders, key_public) != (
            self.key_set,
            self.threshold,
            self.holders,
            self.key_public,
        ):
            raise KeyholderConfigError(
                f"this key holder serves key set {key_set} ({threshold} of {holders}); the node "
                f"is enrolled with key set {self.key_set} ({self.threshold} of {self.holders}). "
                "All key holders of a node must hold shares of the same key."
            )

    def add(self, link: KeyholderLink) -> None:
        """Add (or replace) a holder, after checking that its public share fits the others':
        every ``t`` of the public shares must interpolate to the public key k·G."""
        if any(other.index == link.index for other in self.links if other.url != link.url):
            raise KeyholderConfigError(f"another key holder already has index {link.index}")
        links = [other for other in self.links if other.url != link.url] + [link]
        links.sort(key=lambda other: other.index)
        for subset in itertools.combinations(links, self.threshold):
            shares = [(other.index, bytes.fromhex(other.public_share)) for other in subset]
            try:
                consistent = oprf.interpolate(shares).hex() == self.key_public
            except (oprf.OprfError, ValueError):
                consistent = False
            if not consistent:
                raise KeyholderConfigError(
                    "the key holders' public shares do not fit one key: "
                    + ", ".join(other.name for other in subset)
                    + " do not combine to the key set's public key. Ask the key holders to "
                    "compare their ceremony records."
                )
        self.links = links


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
            key_public=str(doc["key_public"]),
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
