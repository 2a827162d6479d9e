"""A usage mistake (a missing argument, a bad flag value, an unknown command) is one line on stderr
and exit 2, like every other mistake; the usage text stays behind --help."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, line", [
    (["map"], "xbarsim map: error: the following arguments are required: network "
              "(see 'xbarsim map --help')"),
    (["run", "x.yaml", "--seed", "abc"], "xbarsim run: error: argument --seed: invalid int value: "
                                         "'abc' (see 'xbarsim run --help')"),
    (["--no-such-flag"], "xbarsim: error: the following arguments are required: COMMAND "
                         "(see 'xbarsim --help')"),
])
def test_usage_mistake_is_one_line_exit_2(argv, line):
    proc = subprocess.run([sys.executable, "-m", "xbarsim", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [line]
