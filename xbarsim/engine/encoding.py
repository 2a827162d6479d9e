"""WL-driver spike encodings: which cycles a row holding count ``x`` spikes on.

A window has ``T`` cycles numbered from 0 (``T = 2^M − 1`` for M-bit inputs).

* ``uniform`` (default): spike in cycle ``t`` iff
  ``((t+1)·x + ⌊T/2⌋) div T − (t·x + ⌊T/2⌋) div T = 1`` — exactly ``x`` spikes, evenly spread.
* ``burst``: spikes in cycles ``0 … x−1``.
* ``bernoulli``: each cycle independently with ``p = x/T``, from a counter-based hash of
  ``(seed, layer, image, input neuron, cycle)`` (so the same input neuron sends the same train to
  every conv position, and results do not depend on batching or threads). The comparison is
  ``u·T < x·2^24`` with ``u`` the top 24 bits of the hash.
"""

from __future__ import annotations

import numpy as np

from ..errors import XbarsimError

ENCODINGS = ("uniform", "burst", "bernoulli")
#: Largest ``(T+1)·cycles`` schedule table (uint8) the engine builds: 16,385 × 16,383 at M = 14.
MAX_SCHEDULE_BYTES = 1 << 28

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def schedule(encoding: str, window: int, cycles: int | None = None, values=None) -> np.ndarray:
    """``spk[x, t]`` (uint8, shape ``(window+1, cycles)``): 1 where a row holding ``x`` spikes.

    ``cycles`` (default ``window``) may exceed the window: extra (drain) cycles carry no spikes.
    ``values``: build only the rows of these counts (row ``k`` for ``values[k]``) — the compact
    table the engine uses for windows too long for a full one. For ``bernoulli`` this table is
    not used (spikes are drawn per row).
    """
    cycles = window if cycles is None else cycles
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; choose from {', '.join(ENCODINGS)}")
    values = (np.arange(window + 1, dtype=np.int64) if values is None
              else np.asarray(values, np.int64))
    size = len(values) * cycles
    if size > MAX_SCHEDULE_BYTES:
        raise XbarsimError(
            f"{len(values)} distinct input counts over a {window}-cycle window need a "
            f"{size / 2**30:.1f} GiB spike-schedule table (limit {MAX_SCHEDULE_BYTES / 2**30:.2f} "
            f"GiB): use a smaller --batch")
    out = np.zeros((len(values), cycles), np.uint8)
    if encoding == "bernoulli":
        return out
    t = np.arange(window, dtype=np.int64)[None, :]
    h = window // 2
    step = max(1, (1 << 22) // max(1, window))  # rows per block: int64 temporaries stay small
    for lo in range(0, len(values), step):
        x = values[lo:lo + step, None]
        if encoding == "uniform":
            out[lo:lo + len(x), :window] = ((t + 1) * x + h) // window - (t * x + h) // window
        else:  # burst
            out[lo:lo + len(x), :window] = t < x
    return out


def full_table_fits(window: int, cycles: int) -> bool:
    """Whether the whole ``(window+1) × cycles`` table fits :data:`MAX_SCHEDULE_BYTES` (M ≤ 14)."""
    return (window + 1) * cycles <= MAX_SCHEDULE_BYTES


def mix64(z):
    """splitmix64 finalizer on Python ints or uint64 numpy arrays (wrapping arithmetic)."""
    if isinstance(z, np.ndarray):
        z = z.astype(np.uint64)
        with np.errstate(over="ignore"):
            z = z + np.uint64(_GOLDEN)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        return z ^ (z >> np.uint64(31))
    z = (int(z) + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def layer_key(seed: int, layer_index: int) -> int:
    """The per-(run seed, layer) key every Bernoulli draw of that layer starts from."""
    return mix64(mix64(int(seed) & _MASK) ^ (int(layer_index) + 1))


def bernoulli_spikes(key: int, image, neuron, t: int, x, window: int):
    """Vectorised Bernoulli spike decision (numpy twin of the kernel's draw)."""
    image = np.asarray(image, np.uint64)
    neuron = np.asarray(neuron, np.uint64)
    h = mix64(mix64(mix64(np.uint64(key) ^ image) ^ neuron) ^ np.uint64(t))
    u = (h >> np.uint64(40)).astype(np.int64)
    return u * window < np.asarray(x, np.int64) * (1 << 24)
