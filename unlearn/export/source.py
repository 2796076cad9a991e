"""Where an exported policy comes from: a local directory, or ``models:/NAME@ALIAS`` (or
``models:/NAME/VERSION``) in the MLflow model registry, downloaded to a temporary folder.

Used by :func:`unlearn.export.load_policy`; registering a policy is
:mod:`unlearn.export.registry`. Downloads go through :mod:`unlearn.tracking` (mlflow loads only for ``models:/`` URIs).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from unlearn.config import ConfigError

METADATA = "metadata.json"  # an exported policy's metadata, beside its file


def resolve_policy_dir(path: str, tracking_uri: str = "") -> Path:
    """A local policy directory for ``path`` (a directory, or a ``models:/`` registry URI)."""
    if path.startswith("models:/"):
        from unlearn.tracking import download

        return _policy_dir_of_model(download(path, tracking_uri))
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"policy: {path!r} is not a directory (expected an exported policy)")
    return p.resolve()


def _policy_dir_of_model(local: Path) -> Path:
    """A downloaded MLflow model (``MLmodel``, ``model.onnx``, ``extra_files/metadata.json``)
    as a policy directory: its metadata beside the graph. Older registrations (the exported
    folder as it was) already are one."""
    kept = local / "extra_files" / METADATA
    if (local / "MLmodel").is_file() and kept.is_file() and not (local / METADATA).exists():
        shutil.copyfile(kept, local / METADATA)
    return local
