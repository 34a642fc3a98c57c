"""No result is typed by hand: every figure a reader sees in prose reaches it through myst-nb ``glue``.

The rule, applied to every markdown cell of the book's notebooks and to every markdown chapter:

* after removing code (fenced blocks and inline ``code``), maths (``$…$``, ``$$…$$``, ``{math}``), MyST roles and
  their content (``{glue:text}`…```, ``{cite}`…```, ``{func}`…```), link targets and HTML comments,
* no **decimal number** (``0.54``), **percentage** (``71 %``), **speed-up** (``81×`` not followed by a digit, which
  would be a size such as ``64×64``) or **duration** (``95 s``, ``9.7 min``) may remain,
* except the constants in :data:`ALLOWED` (settings and published numbers, not our results).

A result belongs in a code cell's output or in a ``{glue:text}`` role fed by ``myst_nb.glue``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Constants that may be typed: they are inputs or published figures, not results of this code.
ALLOWED = {
    "1.242",      # FaceNet paper's (NN2's) same-person threshold
    "0.6",        # dlib's documented same-person threshold
    "95 %",       # confidence level of every interval
    "5 %",        # false-accept rate of the calibrated thresholds
    "1701.04851",  # the paper's arXiv number
    "3.11",       # Python version
    "2.3",        # CIE76 ΔE of a just-noticeable difference (a published constant)
}

PATTERNS = {
    "decimal": r"(?<![\w.])\d+\.\d+(?![\w.]*\d)",
    "percentage": r"(?<![\w.])\d+(?:\.\d+)?\s?%",
    "speed-up": r"(?<![\w.])\d+(?:\.\d+)?\s?×(?!\s?\d)",
    "duration": r"(?<![\w.])\d+(?:\.\d+)?\s?(?:s|ms|min|h)\b",
}
STRIP = [
    r"```.*?```",                 # fenced code / directives
    r"\$\$.*?\$\$", r"\$[^$\n]+\$",  # maths
    r"\{[\w:.-]+\}`[^`]*`",       # MyST roles with their content: {glue:text}`x`, {cite}`a`, {math}`x`
    r"``[^`]*``", r"`[^`]*`",       # inline code
    r"\]\([^)]*\)",               # link targets
    r"<!--.*?-->",                # HTML comments
    r"\b(?:Apache|GPL|LGPL|CC-BY)-\d+(?:\.\d+)*",  # licence names
]


def prose_of(text: str) -> str:
    for pat in STRIP:
        text = re.sub(pat, " ", text, flags=re.S)
    return text


def typed_figures(text: str) -> list[str]:
    """Hand-typed result figures in a markdown text (see the module docstring)."""
    prose = prose_of(text)
    found = []
    for kind, pat in PATTERNS.items():
        for m in re.finditer(pat, prose):
            tok = m.group(0).strip()
            if tok.replace("\u00a0", " ") in ALLOWED:  # a no-break space counts as a space
                continue
            start = max(0, m.start() - 40)
            found.append(f"{kind} {tok!r} in “…{prose[start:m.end() + 20].strip()}…”".replace("\n", " "))
    return found


def _sources():
    for p in sorted(ROOT.glob("notebooks/[0-9]*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(p.read_text())["cells"]
        for i, c in enumerate(cells):
            if c["cell_type"] == "markdown":
                yield f"{p.relative_to(ROOT)} cell {i}", "".join(c["source"])
    for p in sorted((ROOT / "book").glob("*.md")):
        yield str(p.relative_to(ROOT)), p.read_text()


SOURCES = list(_sources())


def test_the_rule_catches_typed_results():
    assert typed_figures("rank-1 0.54 against chance") and typed_figures("71 % of outputs")
    assert typed_figures("81× faster") and typed_figures("it took 9.7 min") and typed_figures("took 95 s")
    assert not typed_figures("a 64×64 crop, 14×14×256, 32 people, 800 steps, {glue:text}`rank1:.3f`")
    assert not typed_figures("the threshold 1.242 of the FaceNet paper, `x = 0.5`, $\\alpha = 0.3$, 95 % CI")


@pytest.mark.parametrize("where,text", SOURCES, ids=[s[0] for s in SOURCES])
def test_no_hand_typed_result(where, text):
    bad = typed_figures(text)
    assert not bad, f"{where} types results by hand; glue them from the code instead:\n" + "\n".join(bad)
