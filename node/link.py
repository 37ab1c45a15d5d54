"""The node's link to its aggregator, written by ``node join`` to ``<home>/aggregator.json``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

LINK_FILE = "aggregator.json"


class AggregatorLink(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    node_id: str
    institution: str  # as the aggregator registered it
    aggregator_key: str
    aggregator_key_id: str
    joined_at: datetime

    @property
    def base(self) -> str:
        return self.url.rstrip("/")


def link_path(home: Path) -> Path:
    return home / LINK_FILE


def load_link(home: Path) -> AggregatorLink | None:
    path = link_path(home)
    if not path.exists():
        return None
    return AggregatorLink.model_validate_json(path.read_text("utf-8"))


def save_link(home: Path, link: AggregatorLink) -> None:
    path = link_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(link.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
