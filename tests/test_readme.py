"""The README says what the code does: its module table matches the modules' ``__all__``, and its Python examples
run.

The table ("What is in the box") has one row per public module, ``| `jaxnmr.<module>` | ... |``; every name in
backticks in the second cell must be in that module's ``__all__`` and every name of the ``__all__`` must be in the
row (the table is complete), every public module of the package has a row, and every name of ``jaxnmr.__all__``
is listed under the module it comes from. Fenced ``python`` blocks are API examples: they run in order in one
namespace, except a block right after the marker line ``<!-- fragment -->`` (code that needs files or a model
of your own).
"""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FRAGMENT = "<!-- fragment -->"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def public_modules() -> list[str]:
    """Dotted names of the package's public modules (no component starting with ``_``), from the source tree."""
    names = []
    for path in sorted((ROOT / "jaxnmr").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1 and not any(p.startswith("_") for p in parts[1:]):
            names.append(".".join(parts))
    return names


def module_table() -> dict[str, list[str]]:
    """``{module: [names in backticks in its row]}`` from the README's module table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## What is in the box", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not re.fullmatch(r"`jaxnmr(\.\w+)+`", cells[0]):
            continue
        module = cells[0].strip("`")
        assert module not in rows, f"{module} has two rows in the README's module table"
        rows[module] = [t for t in re.findall(r"`([^`]+)`", cells[1]) if _IDENTIFIER.match(t)]
    return rows


def python_blocks() -> list[tuple[int, str, bool]]:
    """``(line number, code, runs)`` of every fenced python block of the README."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            previous = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            blocks.append((start + 1, "\n".join(lines[start + 1:j]), previous != FRAGMENT))
            i = j
        i += 1
    return blocks


def test_the_table_has_a_row_for_every_public_module():
    table = module_table()
    assert len(table) >= 10, table
    missing = sorted(set(public_modules()) - set(table))
    unknown = sorted(set(table) - set(public_modules()))
    assert not missing and not unknown, (f"README module table: modules without a row {missing}; rows for modules "
                                         f"that do not exist {unknown}")


@pytest.mark.parametrize("module", sorted(module_table()))
def test_each_row_lists_exactly_the_modules_all(module):
    names = module_table()[module]
    exported = importlib.import_module(module).__all__
    assert len(names) == len(set(names)), f"{module}: names listed twice in the README: {names}"
    not_exported = sorted(set(names) - set(exported))
    unlisted = sorted(set(exported) - set(names))
    assert not not_exported and not unlisted, (f"README row for {module}: listed but not in __all__ "
                                               f"{not_exported}; in __all__ but not listed {unlisted}")


def test_the_top_level_api_is_listed_under_its_modules():
    import jaxnmr

    table = module_table()
    owner = {name: module for module, names in table.items() for name in names}
    for name in jaxnmr.__all__:
        assert name in owner, f"jaxnmr.{name} is in no row of the README's module table"
        source = importlib.import_module(owner[name])
        assert getattr(jaxnmr, name) is getattr(source, name), (f"jaxnmr.{name} is not {owner[name]}.{name}, "
                                                                "the module the README lists it under")


def test_the_examples_are_marked():
    blocks = python_blocks()
    assert sum(runs for _, _, runs in blocks) >= 3, "the README should keep at least three runnable examples"


def test_the_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything an example writes lands here
    namespace = {"__name__": "readme"}
    for line, code, runs in python_blocks():
        if runs:
            exec(compile(code, f"README.md, the python block at line {line}", "exec"), namespace)
