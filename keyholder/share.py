"""The key ceremony and a key holder's share file.

:func:`ceremony` draws a fresh OPRF key, splits it t-of-n (``protocol.oprf.split``), checks the
split and returns one :class:`ShareFile` per holder; the key itself is never written anywhere
and is dropped as soon as the shares exist. Each share file is handed to one key holder, who
loads it with ``publieksdata keyholder init --share``. The public parts (the key set id, the
public key k·G and every holder's public share k_i·G) are the same in every file, so that the
holders can compare them out of band: the record of the ceremony.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from protocol import oprf
from protocol.sector import key_set_id


class ShareFileError(ValueError):
    """A share file that cannot be read, or whose public parts do not match its share."""


@dataclass(frozen=True, slots=True)
class ShareFile:
    key_set: str
    index: int
    threshold: int
    holders: int
    share: int
    public_key: str  # k·G, hex
    public_shares: tuple[str, ...]  # k_i·G for i = 1..n, hex

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "publieksdata-oprf-share-v1",
                "suite": "ristretto255-SHA512",
                "key_set": self.key_set,
                "index": self.index,
                "threshold": self.threshold,
                "holders": self.holders,
                "share": oprf.scalar_to_bytes(self.share).hex(),
                "public_key": self.public_key,
                "public_shares": list(self.public_shares),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ShareFile:
        try:
            doc = json.loads(text)
            if doc.get("format") != "publieksdata-oprf-share-v1":
                raise ShareFileError("not a publieksdata OPRF share file")
            share = cls(
                key_set=str(doc["key_set"]),
                index=int(doc["index"]),
                threshold=int(doc["threshold"]),
                holders=int(doc["holders"]),
                share=oprf.scalar_from_bytes(bytes.fromhex(doc["share"])),
                public_key=str(doc["public_key"]),
                public_shares=tuple(str(s) for s in doc["public_shares"]),
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            if isinstance(exc, ShareFileError):
                raise
            raise ShareFileError(f"the share file is malformed: {exc}") from None
        share.check()
        return share

    def check(self) -> None:
        """The share belongs to this key set: its public share is k_i·G, the key set id is
        derived from the public key, and the index is within 1..n."""
        if not 1 <= self.threshold <= self.holders == len(self.public_shares):
            raise ShareFileError("the threshold and holder count do not fit")
        if not 1 <= self.index <= self.holders:
            raise ShareFileError("the share's index is outside 1..n")
        if oprf.public_element(self.share).hex() != self.public_shares[self.index - 1]:
            raise ShareFileError("the share does not match its public share")
        if key_set_id(self.public_key) != self.key_set:
            raise ShareFileError("the key set id does not match the public key")

    def write(self, path: Path) -> None:
        """Write the file readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self.to_json() + "\n")

    @classmethod
    def read(cls, path: Path) -> ShareFile:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ShareFileError(f"cannot read {path}: {exc.strerror}") from None


def ceremony(threshold: int, holders: int) -> list[ShareFile]:
    """A fresh key split ``threshold``-of-``holders``; the key is checked, then forgotten."""
    key = oprf.new_key()
    shares = oprf.split(key, threshold, holders)
    public_key = oprf.public_element(key).hex()
    public_shares = tuple(oprf.public_element(s.value).hex() for s in shares)
    # Self-check: the first t shares give the key's output on a test input.
    probe = b"publieksdata-ceremony-check"
    r, blinded = oprf.blind(probe)
    firsts = [(s.index, oprf.evaluate(s.value, blinded)) for s in shares[:threshold]]
    if oprf.combine_and_finalize(probe, r, firsts, threshold) != oprf.direct(key, probe):
        raise RuntimeError("the key split failed its own check")  # pragma: no cover
    del key
    key_set = key_set_id(public_key)
    return [
        ShareFile(key_set, s.index, threshold, holders, s.value, public_key, public_shares)
        for s in shares
    ]
