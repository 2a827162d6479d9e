"""The paper experiment as a library (issue 28): ``xbarsim.paper`` (``xbarsim.train.paper``) gives
a notebook what ``xbarsim paper`` gives the shell, and the command is a thin layer over it.

* :func:`merge_json` of the shipped ``docs/tables-*.json`` is the command's markdown and JSON,
  byte for byte, and regenerates ``docs/tables-<n>.md`` below its header; no PyTorch needed.
* :class:`PaperOptions` refuses a mistake with the one line the command prints.
* ``--from-json`` files are read bounded and checked: a hostile or broken file is one line naming
  the file and the key, never a traceback or a hang (issue 26's conventions).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import xbarsim
from xbarsim.cli import main
from xbarsim.errors import XbarsimError
from xbarsim.train import paper

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MERGED = ("lenet", "alexnet", "resnet18")  # the shipped --from-json merges


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(capsys, *argv) -> str:
    """Run the CLI, check exit 2 / no stdout / exactly one stderr line; return that line."""
    rc, out, err = cli(capsys, *argv)
    assert (rc, out) == (2, ""), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err[:-1]


def as_typed(monkeypatch, argv) -> str:
    """The command line as the tables name it: ``sys.argv`` as the shell would set it."""
    argv = ["xbarsim", *map(str, argv)]
    monkeypatch.setattr(sys, "argv", argv)
    return " ".join(shlex.quote(a) for a in argv)


# -- the notebook API gives what the command gives ------------------------------------------------

@pytest.mark.parametrize("name", MERGED)
def test_merge_json_is_the_commands_markdown_and_json(name, tmp_path, monkeypatch, capsys):
    src = DOCS / f"tables-{name}.json"
    argv = ["paper", name, "--bits", "5,4,3", "--from-json", src, "--out", tmp_path / "cmd.md",
            "--json", tmp_path / "cmd.json"]
    command = as_typed(monkeypatch, argv)
    rc, out, _ = cli(capsys, *argv)
    assert rc == 0
    result = xbarsim.paper.merge_json(name, [src], paper.PaperOptions(bits=(5, 4, 3),
                                                                        command=command))
    assert isinstance(result, paper.PaperResult) and result.network == name
    assert out == result.markdown + "\n"
    assert (tmp_path / "cmd.md").read_text() == result.markdown
    result.save(tmp_path / "api.md", tmp_path / "api.json")
    assert (tmp_path / "api.md").read_bytes() == (tmp_path / "cmd.md").read_bytes()
    assert (tmp_path / "api.json").read_bytes() == (tmp_path / "cmd.json").read_bytes()
    # the shipped document, below its header (which names the command that made it)
    below = lambda text: text.split("\n", 3)[3]  # noqa: E731
    assert below(result.markdown) == below((DOCS / f"tables-{name}.md").read_text())
    # figures a notebook can slice: tables keyed by table number and width, as in the file
    shipped = json.loads(src.read_text())
    assert result.figures["tables"][4][4]["w_cycle"] == shipped["tables"]["4"]["4"]["w_cycle"]


def test_merge_json_names_the_python_call_by_default_and_reads_a_comma_list():
    src = str(DOCS / "tables-resnet18.json")
    result = paper.merge_json("resnet18", f"{src},{src}", paper.PaperOptions(bits="4,3"))
    assert result.markdown.split("\n")[2].startswith(
        "Made by `xbarsim.paper.merge_json('resnet18', bits=(4, 3))` from the figures measured by")
    assert "| | 4-bit | 3-bit |" in result.markdown


def test_the_merge_runs_without_torch(tmp_path):
    """``xbarsim.paper`` and its merge import no PyTorch (the core install has none)."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import xbarsim\n"
            "r = xbarsim.paper.merge_json('alexnet', [sys.argv[1]])\n"
            "print(r.figures['ideal'])")
    proc = subprocess.run([sys.executable, "-c", code, str(DOCS / "tables-alexnet.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) == json.loads((DOCS / "tables-alexnet.json").read_text())["ideal"]


def test_reproduce_without_torch_is_the_commands_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(XbarsimError) as err:
        paper.reproduce("lenet", paper.PaperOptions(workdir="w"))
    assert str(err.value) == "xbarsim paper needs PyTorch: pip install -e '.[train]'"
    assert one_line(capsys, "paper", "lenet") == f"xbarsim: error: {err.value}"


def test_recipes_and_the_package_root():
    assert xbarsim.paper is paper and "paper" in xbarsim.__all__
    r = paper.RECIPES["resnet18"]
    assert isinstance(r, paper.Recipe) and r.lambda_bits == 4 and r.paper["ideal"] == 93.05
    with pytest.raises(XbarsimError, match=r"^paper: no recipe for 'vgg' \(have lenet, alexnet, "
                                           r"resnet18\)$"):
        paper.merge_json("vgg", [DOCS / "tables-alexnet.json"])


# -- options: the command's one line --------------------------------------------------------------

OPTION_CASES = [
    ({"seed": -1}, ["--seed", "-1"], "--seed: must be in 0..9223372036854775807 (got -1)"),
    # a width that is not an integer was a ValueError traceback before issue 28
    ({"bits": "5,x"}, ["--bits", "5,x"],
     "--bits: must be widths M separated by commas, e.g. 5,4,3 (got 5,x)"),
    ({"bits": ""}, ["--bits", ""], "--bits: must be widths M separated by commas, e.g. 5,4,3 "
                                   "(got )"),
    ({"bits": "5,1"}, ["--bits", "5,1"], "--bits: each width must be in 2..16 (got 5,1)"),
    ({"epochs": -1}, ["--epochs", "-1"], "--epochs: must be >= 0 (got -1)"),
    ({"cycle_epochs": -2}, ["--cycle-epochs", "-2"], "--cycle-epochs: must be >= 0 (got -2)"),
    ({"threads": 0}, ["--threads", "0"], "--threads: must be >= 1 (got 0)"),
    ({"samples": 0}, ["--samples", "0"], "--samples: must be >= 1 (got 0)"),
    ({"train_limit": 0}, ["--train-limit", "0"], "--train-limit: must be >= 1 (got 0)"),
]


@pytest.mark.parametrize("kwargs,flags,line", OPTION_CASES)
def test_options_refuse_what_the_command_refuses_in_the_same_line(kwargs, flags, line, capsys):
    with pytest.raises(XbarsimError) as err:
        paper.PaperOptions(**kwargs)
    assert str(err.value) == line
    src = DOCS / "tables-alexnet.json"  # merging: no PyTorch, nothing measured
    assert one_line(capsys, "paper", "alexnet", "--from-json", src, *flags) == \
        f"xbarsim: error: {line}"


@pytest.mark.parametrize("kwargs,line", [
    ({"bits": (5, 4.5)}, "--bits: must be widths M separated by commas, e.g. 5,4,3 (got 5,4.5)"),
    ({"bits": (True,)}, "--bits: must be widths M separated by commas, e.g. 5,4,3 (got True)"),
    ({"bits": ()}, "--bits: must be widths M separated by commas, e.g. 5,4,3 (got )"),
    ({"epochs": "3"}, "--epochs: must be an integer >= 0 (got '3')"),
    ({"seed": 1.5}, "--seed: must be an integer in 0..9223372036854775807 (got 1.5)"),
    ({"torch_device": "tpu"}, "--torch-device: must be one of cpu, cuda, auto (got tpu)"),
])
def test_options_from_python_are_checked_as_the_parser_would(kwargs, line):
    with pytest.raises(XbarsimError) as err:
        paper.PaperOptions(**kwargs)
    assert str(err.value) == line


def test_options_normalize_bits_and_pick_the_recipes_defaults():
    opts = paper.PaperOptions(bits="5,4,3", nc_epochs=0)
    assert opts.bits == (5, 4, 3) == paper.PaperOptions(bits=[5, 4, 3]).bits
    r = paper.RECIPES["alexnet"]
    assert (opts.pick("nc_epochs", r), opts.pick("epochs", r)) == (0, r.epochs)
    assert opts.work("alexnet") == Path("results/paper-alexnet")


# -- --from-json: hostile and broken files, one line each ----------------------------------------

def good() -> dict:
    return json.loads((DOCS / "tables-alexnet.json").read_text())


def broken(path: Path, change) -> Path:
    figs = good()
    change(figs)
    path.write_text(json.dumps(figs))
    return path


def merge_line(capsys, path) -> str:
    return one_line(capsys, "paper", "alexnet", "--from-json", path, "--bits", "5,4,3")


def test_from_json_missing_folder_and_fifo(tmp_path, capsys):
    assert merge_line(capsys, tmp_path / "no.json") == \
        f"xbarsim: error: --from-json: {tmp_path / 'no.json'}: not a readable JSON file (file " \
        f"not found)"
    assert merge_line(capsys, tmp_path) == \
        f"xbarsim: error: --from-json: {tmp_path}: not a readable JSON file (not a regular " \
        f"file: a folder)"
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)  # opened without blocking: no writer, no hang
    assert merge_line(capsys, fifo) == (f"xbarsim: error: --from-json: {fifo}: not a readable "
                                        f"JSON file (not a regular file: a FIFO (named pipe))")


def test_from_json_too_large_is_refused_unread(tmp_path, capsys):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # sparse: nothing is written, nothing read
        fh.truncate(paper.MAX_FIGURES_BYTES + 1)
    assert merge_line(capsys, big) == (
        f"xbarsim: error: --from-json: {big}: not a readable JSON file (figures file too large: "
        f"{paper.MAX_FIGURES_BYTES + 1:,} bytes (the limit is {paper.MAX_FIGURES_BYTES:,}))")


@pytest.mark.parametrize("content,why", [
    (b"", "Expecting value: line 1 column 1 (char 0)"),
    (b"\x80{}", "'utf-8' codec can't decode byte 0x80 in position 0: invalid start byte"),
    (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
])
def test_from_json_not_json(tmp_path, capsys, content, why):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    assert merge_line(capsys, path) == \
        f"xbarsim: error: --from-json: {path}: not a readable JSON file ({why})"


# Each was a KeyError / TypeError / AttributeError / ValueError traceback before issue 28.
SHAPE_CASES = [
    (lambda f: f.clear() or None, "figures of None, not alexnet"),
    (lambda f: f.update(network="lenet"), "figures of lenet, not alexnet"),
    (lambda f: f.update(ideal="85"), 'ideal: must be a number (got "85")'),
    (lambda f: f.update(samples=-1), "samples: must be an integer >= 0 (got -1)"),
    (lambda f: f.update(seconds=[1]), "seconds: must map names to numbers of seconds (got [1])"),
    (lambda f: f.update(commands="x"), 'commands: must be a list of strings (got "x")'),
    (lambda f: f.update(command=3), "command: must be a string (got 3)"),
    (lambda f: f.update(t3_finetune_epochs="1"),
     't3_finetune_epochs: must be an integer (got "1")'),
    (lambda f: f.pop("tables"), "tables: must hold tables 2, 3 and 4 (got null)"),
    (lambda f: f["tables"].pop("3"), "tables: must hold tables 2, 3 and 4 (got {"),
    (lambda f: f["tables"].update({"2": [1]}), "tables.2: must map widths to rows (got [1])"),
    (lambda f: f["tables"]["2"].update(five={}), 'tables.2: widths must be integers in 2..16 '
                                                 '(got "five")'),
    (lambda f: f["tables"]["2"].update({"99": {}}), 'tables.2: widths must be integers in 2..16 '
                                                    '(got "99")'),
    (lambda f: f["tables"]["3"].update({"5": 7}),
     "tables.3.5: must be an object of figures (got 7)"),
    (lambda f: f["tables"]["4"]["5"].pop("w_file"), "tables.4.5.w_file: missing"),
    (lambda f: f["tables"]["4"]["5"].update(w_file=1),
     "tables.4.5.w_file: must be a string (got 1)"),
    (lambda f: f["tables"]["4"]["5"].update(w_cycle="84"),
     'tables.4.5.w_cycle: must be a finite number (got "84")'),
    (lambda f: f["tables"]["2"]["4"].update(w=math.nan), "tables.2.4.w: must be a finite number "
                                                         "(got NaN)"),
    (lambda f: f["tables"]["4"]["3"].update(w_ideal_seconds=None),
     "tables.4.3.w_ideal_seconds: must be a finite number (got null)"),
    (lambda f: f["training"].append(3), "training[7]: must be an object with a file name (got 3)"),
    (lambda f: f["training"][0].pop("figures"), "training[0].figures: missing"),
    (lambda f: f["training"][0].update(stages={"nc": [1]}),
     'training[0].stages: must map stages to [epochs, seconds] (got {"nc": [1]})'),
    (lambda f: f["training"][0].update(test_images="all"),
     'training[0].test_images: must be an integer or null (got "all")'),
]


@pytest.mark.parametrize("change,why", SHAPE_CASES)
def test_from_json_with_a_broken_key_is_one_line_naming_it(tmp_path, capsys, change, why):
    path = broken(tmp_path / "b.json", change)
    line = merge_line(capsys, path)
    assert line.startswith(f"xbarsim: error: --from-json: {path}: {why}"), line
    assert not list(tmp_path.glob("*.md"))


def test_from_json_a_json_list_and_a_second_file_of_another_network(tmp_path, capsys):
    (tmp_path / "l.json").write_text("[]")
    assert merge_line(capsys, tmp_path / "l.json") == (
        f"xbarsim: error: --from-json: {tmp_path / 'l.json'}: not the figures of xbarsim paper "
        f"--json (got a JSON list)")
    other = broken(tmp_path / "o.json", lambda f: f.update(ideal=f["ideal"] + 1))
    assert merge_line(capsys, f"{DOCS / 'tables-alexnet.json'},{other}") == (
        f"xbarsim: error: --from-json: {other}: ideal 86.15 differs from the first file's 85.15 "
        f"(not the same float network)")
    with pytest.raises(XbarsimError, match="^--from-json: no files given$"):
        paper.merge_json("alexnet", [])


def test_from_json_keeps_keys_it_does_not_read(tmp_path):
    """A row's extra keys (a later version's figures, say) are carried through, not refused."""
    path = broken(tmp_path / "x.json",
                  lambda f: f["tables"]["4"]["5"].update(note="measured twice", extra=[1, 2]))
    result = paper.merge_json("alexnet", [path])
    assert result.figures["tables"][4][5]["note"] == "measured twice"
