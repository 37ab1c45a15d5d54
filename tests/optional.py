"""The optional parts of the test suite: PostgreSQL, headless Chromium and network namespaces.

A test that needs one calls :func:`need` with the reason the part is missing (or None when it
is there). Without the part the test skips with that reason, unless the part's
``PUBLIEKSDATA_REQUIRE_*`` variable is 1 (``.ci/run`` sets them), in which case it fails. At the
end of the run, :func:`summary_lines` says for each part whether its tests ran or were skipped,
why, and how to get it; ``tests/conftest.py`` prints those lines under pytest's own summary.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import NoReturn

import pytest


@dataclass(frozen=True)
class Part:
    name: str
    require: str  # the environment variable that turns a skip into a failure
    how: str  # how to get it


POSTGRES = Part(
    "PostgreSQL",
    "PUBLIEKSDATA_REQUIRE_POSTGRES",
    "run a PostgreSQL server at 127.0.0.1:5432 (user postgres, database test, no password) or set "
    "PUBLIEKSDATA_TEST_POSTGRES_URL; on Debian: apt-get install postgresql (.ci/run starts the "
    "local cluster)",
)
BROWSER = Part(
    "headless Chromium",
    "PUBLIEKSDATA_REQUIRE_BROWSER",
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
    ".ci/run does this)",
)
NETNS = Part(
    "network namespaces",
    "PUBLIEKSDATA_REQUIRE_NETNS",
    "run the tests as root with the ip command (iproute2), curl and nginx-light (.ci/run installs "
    "nginx-light and requires this part when it runs as root)",
)
PARTS = (POSTGRES, BROWSER, NETNS)

_used: Counter[str] = Counter()


def need(part: Part, missing: str | None) -> None:
    """Go on if ``missing`` is None; otherwise skip (or fail, if the part is required)."""
    if missing is None:
        _used[part.name] += 1
        return
    _stop(part, missing)


def _stop(part: Part, missing: str) -> NoReturn:
    if os.environ.get(part.require) == "1":
        pytest.fail(f"{part.require}=1 but {missing}")
    pytest.skip(f"{part.name}: {missing}")


def used() -> list[str]:
    """The parts this process found available (sent from xdist workers to the controller)."""
    return sorted(_used)


def mark_used(names: list[str]) -> None:
    _used.update(names)


def summary_lines(skip_reasons: list[str]) -> list[str]:
    """One line per optional part: ran, skipped (how many tests, why, how to get it), or unused.

    ``skip_reasons`` are the reasons of every skipped test of the run, as pytest reports them."""
    lines = []
    for part in PARTS:
        prefix = f"{part.name}: "
        mine = Counter(reason.split(prefix, 1)[1] for reason in skip_reasons if prefix in reason)
        if mine:
            why = "; ".join(sorted(mine))
            lines.append(
                f"{part.name}: SKIPPED {sum(mine.values())} test(s): {why}. "
                f"To run them: {part.how}."
            )
        elif _used[part.name]:
            lines.append(f"{part.name}: available, its tests ran")
        else:
            lines.append(f"{part.name}: not needed by the selected tests")
    return lines
