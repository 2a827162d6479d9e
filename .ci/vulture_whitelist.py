"""False positives of the dead-code check (`vulture`, run by .ci/run with the settings in
pyproject.toml): names that something vulture cannot see uses. vulture matches names, not objects,
so each line below marks one name as used, with who uses it. Never executed.

Dead code is removed, not listed here; a name belongs here only when a caller outside Python's
plain name lookups reads it."""

# Python and library protocols
__getattr__              # xbarsim/__init__.py: module __getattr__ (PEP 562): lazy from_torch, paper
_.__class__              # xbarsim/sweep/__init__.py: the module's class swapped so xbarsim.sweep is callable
_.__qualname__           # xbarsim/interop/pt2_archive.py: _Foreign names itself like a function for repr/tracebacks
_.find_class             # xbarsim/io/datasets.py: pickle.Unpickler hook (CIFAR batches, allow-list)
_.forward                # xbarsim/train/*.py: torch.nn.Module / autograd.Function call forward
_.required               # xbarsim/cli.py, commands/trace.py: argparse subparsers' .required flag
_.yaml_implicit_resolvers  # xbarsim/config/yamlio.py: PyYAML loader's resolver table
_.benchmark              # xbarsim/train/loop.py: torch.backends.cudnn.benchmark
_.on_start               # xbarsim/engine/warm.py: numba.core.event.Listener hooks, called by numba
_.on_end                 # (the same)
signum                   # xbarsim/cli.py: a signal handler's signature is (signum, frame)

# fields read by name (dataclasses.fields, the card parsers, NamedTuple unpacking, docs tables)
_.pair                   # config/device.py: DeviceCard.pair, a card key (`pair: differential`)
_.technology_nm          # cost/circuit.py: CircuitCard.technology_nm, a card key
_.tolerance              # cost/table5.py: Check.tolerance, unpacked as a tuple and in _asdict() (run --json)
