"""The package's folders are the pipeline (docs/architecture.md): imports point one way, from a
later stage to an earlier one, and no module imports another that (directly or not) imports it
back. Walks every ``import`` in the source with ``ast``, function-level imports included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "xbarsim"

#: Stage of each top-level part of the package; a module may import only from a lower stage or
#: from its own folder. ``errors`` (imports nothing) and ``io`` (only errors) are shared by all;
#: cost, sweep and train are peers that never import each other. ``interop`` (PyTorch and NIR
#: front ends) sits just above them: it reuses train's quantizers, and only commands and the
#: package root import it.
STAGE = {"errors": -1, "version": -1, "io": 0, "config": 1, "network": 2, "hardware": 3, "engine": 4,
         "cost": 5, "sweep": 5, "train": 5, "spice": 5, "interop": 5.5, "commands": 6,
         "__init__": 7, "cli": 7, "__main__": 8}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(name: str, path: Path, known: set) -> set:
    """Package modules that ``name`` imports (``from .x import y`` counts ``.x.y`` when that is
    a module, else ``.x``)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[:len(base) - node.level + 1]
                mod = ".".join(root + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def graph() -> dict:
    mods = modules()
    return {n: imports_of(n, p, set(mods)) for n, p in mods.items()}


def part(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_stage():
    assert {part(n) for n in modules()} <= set(STAGE)


def test_package_root_holds_at_most_six_modules():
    assert len(list(PKG.glob("*.py"))) <= 6


def test_imports_point_from_later_stages_to_earlier_ones():
    bad = [f"{a} imports {b}" for a, deps in graph().items() for b in deps
           if part(a) != part(b) and STAGE[part(b)] >= STAGE[part(a)]]
    assert bad == []


def test_no_import_circle():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(g[n]):
            # a package's __init__ importing its own submodules is not a circle
            if n.startswith(m + ".") and g.get(m) and n in g[m]:
                continue
            if state.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert cycles == []


def test_the_checker_sees_a_circle_and_a_backward_arrow(tmp_path):
    """The walk finds relative, absolute and function-level imports (guards the checks above)."""
    g = graph()
    assert "xbarsim.hardware.irdrop" in g["xbarsim.hardware.program"]        # inside a function
    assert "xbarsim.config.device" in g["xbarsim.hardware.program"]          # ..config.device
    assert "xbarsim.engine.simulator" in g["xbarsim.engine"]                 # package __init__
    assert part("xbarsim.engine.kernels") == "engine" and part("xbarsim") == "__init__"


# -- docs/architecture.md names every module ---------------------------------------------------------
DOC = PKG.parent / "docs" / "architecture.md"


def unnamed_modules(doc: str) -> list:
    """Module files of the package that the folder table of ``doc`` does not name: a top-level
    module by its file name in the first column (`` `cli.py` ``), a module of a folder by its name
    in that folder's row (`` `engine/` `` … `` `blocked` ``); a folder's ``__init__.py`` by its row."""
    rows = {}
    for line in doc.splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 3:
            for name in re.findall(r"`([^`]+)`", cells[1]):
                rows[name] = cells[2]
    missing = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if len(rel.parts) == 1:
            named = rel.name in rows
        elif rel.name == "__init__.py":
            named = f"{rel.parts[0]}/" in rows
        else:
            row = rows.get(f"{rel.parts[0]}/", "")
            named = f"`{rel.stem}`" in row or f"`{rel.name}`" in row
        if not named:
            missing.append(rel.as_posix())
    return missing


def test_architecture_doc_names_every_module():
    assert unnamed_modules(DOC.read_text()) == []


def test_the_doc_check_sees_a_module_left_out():
    doc = DOC.read_text()
    assert unnamed_modules(doc.replace("`blocked`", "blocked")) == ["engine/blocked.py"]
    assert unnamed_modules(doc.replace("`cli.py`, ", "")) == ["cli.py"]
    spice_row = next(line for line in doc.splitlines() if line.startswith("| `spice/`"))
    assert set(unnamed_modules(doc.replace(spice_row, ""))) == {
        f"spice/{p.name}" for p in (PKG / "spice").glob("*.py")}


def test_tests_do_not_import_each_other():
    """Helpers two test files share live in tests/conftest.py; a test module imports no other."""
    tests = Path(__file__).resolve().parent
    bad = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name} imports {n}" for n in names
                    if n.split(".")[0] == "tests" or n.startswith("test_")]
    assert bad == []
