"""Creating a key holder's home: its share, its signing key, its settings file and database."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyholder.settings import ENV_FILE, KeyholderSettings
from keyholder.share import ShareFile
from keyholder.storage.db import upgrade
from protocol.signing import SigningKey


class HomeExists(RuntimeError):
    """The home directory already holds a key holder."""


def init_home(
    home: Path, share: ShareFile, name: str, database_url: str | None = None
) -> KeyholderSettings:
    """Create a key holder home around ``share``. Refuses to touch an existing one."""
    home = home.resolve()
    probe = KeyholderSettings(home=home)
    if probe.share_path.exists() or probe.signing_key_path.exists():
        raise HomeExists(f"{home} already holds a key holder; its share is left untouched")
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        "# publieksdata key holder settings; see docs/reference/configuration.md",
        f"PUBLIEKSDATA_KEYHOLDER_NAME={json.dumps(name, ensure_ascii=False)}",
    ]
    if database_url:
        lines.append(f"PUBLIEKSDATA_KEYHOLDER_DATABASE_URL={database_url}")
    (home / ENV_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = KeyholderSettings.load(home)
    share.write(settings.share_path)
    fd = os.open(settings.signing_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(SigningKey.generate().to_pem())
    upgrade(settings.database_url)
    return settings
