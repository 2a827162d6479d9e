"""The files shipped with xbarsim: ``networks/`` (network YAMLs and trained weights), ``devices/``
(device cards) and ``circuits/`` (circuit cards).

In the source tree they are the top-level folders beside the package; a built wheel carries
copies of them inside the package, at ``xbarsim/shipped/<kind>/`` (setup.py's ``build_py`` hook),
with the same relative layout, so the ``device: ../devices/…`` references inside the network
YAMLs resolve in both. :func:`shipped_dir` finds whichever is there.
"""

from __future__ import annotations

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


__all__ = ["KINDS", "resolve_shipped", "shipped_dir", "shipped_names"]
