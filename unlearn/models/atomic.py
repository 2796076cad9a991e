"""Directories written atomically: into a temporary sibling, swapped in at the end."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def atomic_dir(target: Path):
    """Context: write into a temporary sibling, then swap it in (nothing half-written)."""

    class _Ctx:
        def __enter__(self) -> Path:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            return self.tmp

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
                self.tmp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                self.tmp.rename(target)

    return _Ctx()
