"""`publieksdata demo --lang`: what the demo prints as it goes is in the chosen language."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from publieksdata import demo


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_message_has_both_languages_with_the_same_blanks() -> None:
    for key, (nl, en) in demo.WORDS.items():
        assert nl and en and nl != en, key
        assert _fields(nl) == _fields(en), key


@pytest.mark.parametrize(
    ("lang", "said", "not_said"),
    [
        ("nl", "Kassa-exports maken en importeren", "Making and importing"),
        ("en", "Making and importing box-office exports", "Kassa-exports"),
    ],
)
def test_the_progress_of_the_demo_follows_lang(
    tmp_path: Path, lang: str, said: str, not_said: str
) -> None:
    with demo.console.capture() as captured:
        nodes = demo._prepare_nodes(tmp_path, 1, 500, lang)
    assert len(nodes) == 1
    printed = captured.get()
    assert said in printed and not_said not in printed
    assert demo.say(lang, "all_stopped") == (
        "Alle demoprocessen zijn gestopt." if lang == "nl" else "All demo processes have stopped."
    )
