"""``xbarsim run --workers N`` / ``--scheduler ADDRESS``: the run cut into shards
(:mod:`xbarsim.sweep.shards`), kept in ``--out DIR/shards`` (or a temporary folder without
``--out``) so that a killed run resumes where it stopped. Every shard file is bound to its run
by a fingerprint and checked when it is read back; an interrupted run (Ctrl-C, SIGTERM) stops
its worker processes at once and ends within seconds."""

from __future__ import annotations

import sys
import tempfile


def run_in_shards(args, network, images, labels, options, keep, writer, progress, sim=None):
    """The merged result of the sharded run (identical to a single-process run)."""
    from ..sweep.shards import run_sharded

    # --workers, --scheduler and --shard-size were checked before any work (sweep.runner.check_sharding)

    def log(msg):
        print(msg, file=sys.stderr)

    common = {"batch": args.batch, "keep": keep, "workers": args.workers,
              "scheduler": args.scheduler, "shard_size": args.shard_size, "trace": writer,
              "progress": progress, "log": log, "sim": sim}
    if args.out:
        return run_sharded(network, images, labels, options, out=args.out, **common)
    with tempfile.TemporaryDirectory(prefix="xbarsim-run-") as tmp:
        return run_sharded(network, images, labels, options, out=tmp, **common)
