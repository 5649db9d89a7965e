"""The sample files the browser tests run are the spec's own text.

``pages/samples/<name>.js`` are cut, byte for byte, from the original
document (a copy in ``pages/spec/``); the two ``.fixed.js`` files differ
from their original by exactly the character or line that makes the
original invalid JavaScript."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from .harness import PAGES

SAMPLES = PAGES / "samples"
SPEC_COPY = PAGES / "spec" / "000_35e9be4e44640dd2.txt"
SPEC_ORIGINAL = Path("/work/shared/spec/000_35e9be4e44640dd2.txt")


def test_the_spec_copy_is_the_original() -> None:
    if not SPEC_ORIGINAL.exists():
        pytest.skip("the shared spec folder is not on this machine (a CI clone): the copy is checked in")
    assert SPEC_COPY.read_bytes() == SPEC_ORIGINAL.read_bytes()


def test_every_sample_is_cut_verbatim_from_the_spec() -> None:
    spec = SPEC_COPY.read_text(encoding="utf-8")
    verbatim = sorted(p for p in SAMPLES.glob("*.js") if not p.name.endswith(".fixed.js"))
    assert len(verbatim) == 29  # §3 init, 22 of §4, 6 of §5
    for path in verbatim:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n") and text[:-1] in spec, path.name


def test_the_fixed_copies_change_one_thing() -> None:
    def changes(name: str) -> list[str]:
        a = (SAMPLES / f"{name}.js").read_text(encoding="utf-8").splitlines()
        b = (SAMPLES / f"{name}.fixed.js").read_text(encoding="utf-8").splitlines()
        return [line for line in difflib.ndiff(a, b) if line[:1] in "+-"]

    # a closing brace too many after the if-chain
    assert changes("s5_callbackToVisitor") == ["- }"]
    # a typographic quote (U+2018) opening a string
    assert changes("s5_videoPickUp") == [
        "- console.log(\u2018访客邀请-访客超时未接听')",
        "+ console.log('访客邀请-访客超时未接听')",
    ]
