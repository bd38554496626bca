"""Every chapter follows one skeleton and stays thin (logic, charts and vocabulary live in the library)."""

import re
from pathlib import Path

import jupytext
import pytest

from layerwise import vocab
from layerwise.spec import PROJECT_ROOT

CHAPTERS = sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
#: The closing sections of every chapter, in this order, after at least one section of its own.
CLOSING = ["Caveats", "Summary", "References"]


def _cells(path: Path):
    return jupytext.read(path)["cells"]


def _h2(cells):
    """Level-2 headings in order: from markdown cells, and from code cells that print one (markdown("## ...")."""
    out = []
    for c in cells:
        text = c["source"] if c["cell_type"] == "markdown" else "\n".join(re.findall(r"[\"']## [^\"'\\]+", c["source"]))
        out += [m.strip().lstrip("\"'").removeprefix("## ").strip() for m in re.findall(r"^[\"']?## .+$", text, re.M)]
    return out


def test_there_are_ten_chapters():
    assert len(CHAPTERS) == 10


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_skeleton(path):
    cells = _cells(path)
    first = cells[0]
    assert first["cell_type"] == "markdown" and first["source"].startswith("# "), "a title and an overview first"
    assert "**Reading guide.**" in first["source"], "the overview ends with a reading guide"
    params = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one parameters cell"
    h2 = _h2(cells)
    assert h2[-3:] == CLOSING, f"closing sections must be {CLOSING}, got {h2[-3:]}"
    assert len(h2) > 3, "at least one section of the chapter's own before the closing ones"
    first_section = next(i for i, c in enumerate(cells) if re.search(r"^[\"']?## ", c["source"], re.M))
    assert params[0] < first_section, "the parameters cell comes before the sections"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_thin(path):
    code = "\n".join(c["source"] for c in _cells(path) if c["cell_type"] == "code")
    assert not re.search(r"^\s*(def|class) ", code, re.M), "functions belong in lib/"
    assert "alt." not in code and "import altair" not in code, "charts belong in layerwise.charts"
    for label in vocab.COMPARISON_ORDER:
        assert f'"{label}"' not in code and f"'{label}'" not in code, f"use layerwise.vocab instead of {label!r}"
    assert "warnings.filterwarnings(\"ignore\")" not in code and "simplefilter(\"ignore\")" not in code
