"""``xbarsim warmup``: compile every simulation kernel into numba's cache now (about 2 min of one
core), so that no later run waits for it: before a cluster's jobs start, or when a container
image is built. Each step is one engine route run once on a tiny network; a kernel already
cached takes milliseconds."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("warmup", help="compile every simulation kernel into numba's cache now "
                       "(for clusters and images; a first run otherwise compiles what it needs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine.warm import warmup

    warmup(log=lambda line: print(line, flush=True))
    return 0
