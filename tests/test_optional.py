"""The closing lines say which optional parts ran or were skipped, why, and how to get them."""

from __future__ import annotations

import pytest

from tests import optional


def test_a_skipped_part_is_named_with_its_count_reason_and_remedy() -> None:
    reasons = [
        "Skipped: PostgreSQL: PostgreSQL at x is not reachable: refused",
        "Skipped: PostgreSQL: PostgreSQL at x is not reachable: refused",
        "Skipped: headless Chromium: it is not installed (/usr/bin/chromium missing)",
        "Skipped: something else entirely",
    ]
    lines = optional.summary_lines(reasons)
    assert lines[0].startswith("PostgreSQL: SKIPPED 2 test(s): PostgreSQL at x is not reachable")
    assert "To run them: run a PostgreSQL server at 127.0.0.1:5432" in lines[0]
    assert lines[1].startswith("headless Chromium: SKIPPED 1 test(s): it is not installed")
    assert "apt-get install chromium chromium-driver" in lines[1]
    assert lines[2].startswith("network namespaces:") and "SKIPPED" not in lines[2]


def test_a_required_part_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(optional.NETNS.require, "1")
    with pytest.raises(pytest.fail.Exception, match="PUBLIEKSDATA_REQUIRE_NETNS=1 but no root"):
        optional.need(optional.NETNS, "no root")
    monkeypatch.delenv(optional.NETNS.require)
    with pytest.raises(pytest.skip.Exception, match="network namespaces: no root"):
        optional.need(optional.NETNS, "no root")
