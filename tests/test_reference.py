"""The shipped protocol reference matches the tables it is generated from."""

from __future__ import annotations

from pathlib import Path

from protocol.reference import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "osc.md"


def test_docs_osc_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/osc.md is stale: run `python -m protocol.reference > docs/osc.md`"
    )


def test_every_message_and_control_is_documented() -> None:
    from protocol.codec import KINDS
    from protocol.controls import CONTROLS

    text = DOC.read_text()
    for k in KINDS:
        assert f"/<ensemble>/{k.address}`" in text
    for c in CONTROLS:
        assert f"| `{c.name}` |" in text
