"""The notebooks follow the house rules that strict nbval alone cannot see (STYLE.md, Notebooks).

nbval proves each stored output comes out the same; these checks make sure there *are* outputs to
compare, that hardly anything is excluded from the comparison, and that notebooks teach rather
than hold the package's logic.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
CURRICULUM = [
    "01-commands-and-events",
    "02-read-models",
    "03-cascades",
    "04-time-travel",
    "05-audit-analytics",
    "06-integrity-and-failure",
]
MAX_EXCLUDED_CELLS = 2  # only timings may escape comparison
NBVAL_MARKERS = ("nbval-skip", "nbval-ignore-output", "NBVAL_SKIP", "NBVAL_IGNORE_OUTPUT")
FOUND = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def code_cells(path: Path) -> list[dict[str, Any]]:
    return [cell for cell in load(path)["cells"] if cell["cell_type"] == "code"]


def source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


def test_the_curriculum_is_all_there() -> None:
    assert [path.stem for path in FOUND] == CURRICULUM


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_names_are_numbered_kebab_case(path: Path) -> None:
    assert re.fullmatch(r"\d\d-[a-z]+(-[a-z]+)*", path.stem)


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_every_code_cell_has_a_stored_output_to_compare(path: Path) -> None:
    empty = [source(cell)[:60] for cell in code_cells(path) if not cell["outputs"]]
    assert empty == []


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_no_stored_output_is_an_error(path: Path) -> None:
    errors = [
        source(cell)[:60]
        for cell in code_cells(path)
        if any(output["output_type"] == "error" for output in cell["outputs"])
    ]
    assert errors == []


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_at_most_a_few_cells_escape_comparison(path: Path) -> None:
    def excluded(cell: dict[str, Any]) -> bool:
        tags = cell.get("metadata", {}).get("tags", [])
        return any(m in tags or m in source(cell) for m in NBVAL_MARKERS)

    assert sum(excluded(cell) for cell in code_cells(path)) <= MAX_EXCLUDED_CELLS


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_notebooks_define_no_functions_or_classes(path: Path) -> None:
    defined = [
        line
        for cell in code_cells(path)
        for line in source(cell).splitlines()
        if re.match(r"\s*(async\s+)?(def|class)\s", line)
    ]
    assert defined == []


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_code_cells_are_short(path: Path) -> None:
    lengths = [len(source(cell).strip().splitlines()) for cell in code_cells(path)]
    assert statistics.median(lengths) <= 5


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_a_notebook_opens_with_its_title_and_what_you_will_learn(path: Path) -> None:
    first = load(path)["cells"][0]
    number = path.stem[:2]

    assert first["cell_type"] == "markdown"
    assert source(first).startswith(f"# {number} · ")
    assert "What you will learn" in source(first)


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_a_notebook_ends_with_an_exercise_a_checker_verifies(path: Path) -> None:
    last = source(code_cells(path)[-1])

    assert re.search(r"^answer = None$", last, re.MULTILINE)
    assert re.search(r"^check_\w+\(.*answer\)$", last, re.MULTILINE)


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_labs_are_made_in_temporary_folders_only(path: Path) -> None:
    # `new_lab` and `shop_history` put a lab under a temp folder; a literal path could be the repo.
    code = "\n".join(source(cell) for cell in code_cells(path))
    assert re.search(r"\b(new_lab|shop_history)\(", code)
    assert not re.search(r"Lab\.(create|open)\(", code)


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_stored_outputs_hold_no_memory_addresses(path: Path) -> None:
    outputs = json.dumps([cell["outputs"] for cell in code_cells(path)])
    assert not re.search(r" at 0x[0-9a-f]{6,}", outputs)
