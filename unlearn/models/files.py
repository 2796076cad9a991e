"""Weight files on disk: which ones are pickles (never loaded)."""

from __future__ import annotations

from pathlib import Path

#: pickled weight formats: refused, never unpickled (safetensors only)
PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def pickle_files(folder: Path) -> list[str]:
    """The names of the pickled weight files in ``folder``, sorted."""
    return sorted(p.name for pat in PICKLES for p in Path(folder).glob(pat))
