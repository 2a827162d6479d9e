"""Build hook: a wheel carries the shipped ``networks/``, ``devices/`` and ``circuits/`` folders.

They stay top-level folders in the source tree (the design card's layout; the network YAMLs name
their device cards as ``../devices/…``), so ``build_py`` copies them into the built package as
``xbarsim/shipped/<folder>/`` with the same relative layout; :mod:`xbarsim.io.shipped` finds them
there (installed) or beside the package (source tree, editable install). Everything else about
the build is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("networks", "devices", "circuits")
PATTERNS = ("*.yaml", "*.npz")


def in_wheel(path: Path) -> bool:
    """The float stages (``networks/*-float.npz``, 1-21 MB each) are what ``xbarsim paper``
    starts from in a source checkout; nothing an installed package runs reads them."""
    return not path.name.endswith("-float.npz")


def shipped_files():
    here = Path(__file__).resolve().parent
    for folder in SHIPPED:
        for pattern in PATTERNS:
            yield from (p for p in sorted((here / folder).glob(pattern)) if in_wheel(p))


class BuildPyWithShipped(build_py):
    """``build_py`` that also copies the shipped folders into ``xbarsim/shipped/``."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the source tree
        here = Path(__file__).resolve().parent
        for src in shipped_files():
            rel = src.relative_to(here)
            dest = Path(self.build_lib) / "xbarsim" / "shipped" / rel
            self.mkpath(str(dest.parent))
            self.copy_file(str(src), str(dest))

    def get_outputs(self, include_bytecode=True):
        here = Path(__file__).resolve().parent
        extra = [str(Path(self.build_lib) / "xbarsim" / "shipped" / p.relative_to(here))
                 for p in shipped_files()]
        return super().get_outputs(include_bytecode) + extra


setup(cmdclass={"build_py": BuildPyWithShipped})
