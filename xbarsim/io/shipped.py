"""The files shipped with xbarsim: ``networks/`` (network YAMLs and trained weights), ``devices/``
(device cards) and ``circuits/`` (circuit cards).

In the source tree they are the top-level folders beside the package; a built wheel carries
copies of them inside the package, at ``xbarsim/shipped/<kind>/`` (setup.py's ``build_py`` hook),
with the same relative layout, so the ``device: ../devices/…`` references inside the network
YAMLs resolve in both. :func:`shipped_dir` finds whichever is there.
"""

from __future__ import annotations

import difflib
from pathlib import Path

KINDS = ("networks", "devices", "circuits")
_PKG = Path(__file__).resolve().parents[1]


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` files (``networks``, ``devices`` or ``circuits``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    installed = _PKG / "shipped" / kind
    if installed.is_dir():
        return installed
    return _PKG.parent / kind


def shipped_names(kind: str) -> list:
    """Names (file stems) of the shipped YAMLs of ``kind``, sorted."""
    folder = shipped_dir(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_shipped(arg, kind: str = "networks") -> Path:
    """``arg`` as a path when that file exists or it looks like one (has a folder part or a
    suffix other than ``.yaml``); else, when ``<shipped kind>/<arg>.yaml`` exists, that file
    (``xbarsim run lenet-mnist-4b``). Otherwise ``arg`` unchanged (the loader reports it)."""
    path = Path(arg)
    text = str(arg)
    if path.exists() or "/" in text or "\\" in text or text in ("", ".", ".."):
        return path
    if path.suffix in (".yaml", ".yml"):
        stem = path.stem
    elif path.suffix == "":
        stem = text
    else:
        return path
    candidate = shipped_dir(kind) / f"{stem}.yaml"
    return candidate if candidate.is_file() else path


#: What one shipped file of each kind is called in messages.
WHAT = {"networks": "network", "devices": "device card", "circuits": "circuit card"}


def is_name(arg) -> bool:
    """``arg`` names a shipped file rather than a path: no folder part and no ``.yaml``/``.yml``
    ending (``paper-50k-1m``, not ``./paper-50k-1m`` or ``paper-50k-1m.yaml``)."""
    text = str(arg)
    return not ("/" in text or "\\" in text or text in ("", ".", "..")
                or text.lower().endswith((".yaml", ".yml")))


def shipped_file(name, kind: str) -> Path | None:
    """The shipped ``kind`` file called ``name`` (``<shipped kind>/<name>.yaml``), or ``None``."""
    if not is_name(name):
        return None
    candidate = shipped_dir(kind) / f"{name}.yaml"
    return candidate if candidate.is_file() else None


def did_you_mean(arg, kind: str) -> str | None:
    """The shipped ``kind`` name ``arg`` most likely meant: the same file name (``../devices/
    paper-50k-1m.yaml`` → ``paper-50k-1m``) or a close spelling (``lenet-mnist-4`` →
    ``lenet-mnist-4b``); ``None`` when nothing is close."""
    text = str(arg).replace("\\", "/").rstrip("/")
    stem = text.rsplit("/", 1)[-1]
    if stem.lower().endswith((".yaml", ".yml")):
        stem = stem.rsplit(".", 1)[0]
    names = shipped_names(kind)
    if stem in names:
        return stem
    close = difflib.get_close_matches(stem, names, n=1, cutoff=0.75)
    return close[0] if close else None


def unknown_name(arg, kind: str) -> str:
    """Why a bare name is neither a file nor a shipped ``kind`` file, with the likely name:
    ``no such file, nor a shipped network (did you mean lenet-mnist-4b? `xbarsim networks`
    lists them)``."""
    guess = did_you_mean(arg, kind)
    hint = f"did you mean {guess}? " if guess else ""
    if kind == "networks" or not shipped_names(kind):
        listing = "`xbarsim networks` lists them"
    else:
        listing = f"shipped: {', '.join(shipped_names(kind))}"
    return f"no such file, nor a shipped {WHAT[kind]} ({hint}{listing})"


def require_shipped(arg, kind: str = "networks") -> Path:
    """:func:`resolve_shipped`, raising :class:`~xbarsim.errors.XbarsimError` (printed after
    ``xbarsim: error:``) for a name without a folder part that is neither a file nor a shipped
    ``kind`` file, with the shipped name it most likely meant (``xbarsim run lenet-mnist-4``)."""
    from ..errors import XbarsimError

    path = resolve_shipped(arg, kind)
    text = str(arg)
    if path.exists() or "/" in text or "\\" in text or text in ("", ".", ".."):
        return path
    if path.suffix not in ("", ".yaml", ".yml"):
        return path
    raise XbarsimError(f"{text}: {unknown_name(text, kind)}")


__all__ = ["KINDS", "did_you_mean", "is_name", "require_shipped", "resolve_shipped",
           "shipped_dir", "shipped_file", "shipped_names", "unknown_name"]
