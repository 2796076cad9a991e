"""Where pretrained base models and classifiers live: the workdir cache (keyed by a hash of
the config sections that define them) and the assets shipped in the package.

The families call these with their own model key (:meth:`Family.model_key`);
:mod:`unlearn.pretrain` asks the config's family for the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from unlearn.config import Config, ConfigError, digest_of
from unlearn.config.schema import DATA_RUN_ONLY

if TYPE_CHECKING:
    from unlearn.models import Classifier

ASSETS = Path(__file__).parent.parent / "assets"


@dataclass(frozen=True)
class Pretrained:
    """Where the base model and the classifier live, and how good the classifier is."""

    model_dir: Path
    classifier_dir: Path
    classifier_accuracy: float


#: ``model.pretrained: asset:NAME/model`` names a model shipped in the package; the key
#: hashes the reference, not this machine's path, so a shipped fine-tune is found anywhere
ASSET_PREFIX = "asset:"


def resolve_pretrained(ref: str) -> str:
    """``model.pretrained`` as a path or hub id (``asset:demo/model`` → the shipped folder)."""
    if not ref.startswith(ASSET_PREFIX):
        return ref
    path = ASSETS / ref[len(ASSET_PREFIX) :]
    if not (path / "unlearn.json").is_file():
        known = sorted(f"{ASSET_PREFIX}{d.parent.name}/{d.name}" for d in ASSETS.glob("*/model"))
        raise ConfigError(
            f"model.pretrained: {ref!r} is not a shipped model; expected one of {', '.join(known)}"
        )
    return str(path)


def classifier_key(cfg: Config) -> str:
    d = cfg.to_dict()
    key = {
        "data": {k: v for k, v in d["data"].items() if k not in DATA_RUN_ONLY},
        "steps": cfg.pretrain.classifier_steps,
        "lr": cfg.pretrain.classifier_lr,
        "seed": cfg.pretrain.seed,
        "label_smoothing": cfg.pretrain.classifier_label_smoothing,
    }
    return "classifier-" + digest_of(key)


def cache_dirs(cfg: Config, model_key: str) -> tuple[Path, Path]:
    root = cfg.workdir_path / "pretrained"
    return root / model_key, root / classifier_key(cfg)


def shipped_dirs(cfg: Config, model_key: str) -> tuple[Path | None, Path | None]:
    """Assets in the package that were made by exactly this config (by key)."""
    found: list[Path | None] = [None, None]
    for i, key in enumerate((model_key, classifier_key(cfg))):
        for d in ASSETS.glob("*/*"):
            meta = d / "key.txt"
            if meta.is_file() and meta.read_text().strip() == key:
                found[i] = d
    return found[0], found[1]


def locate(cfg: Config, model_key: str) -> tuple[Path | None, Path | None]:
    """Existing base model and classifier for ``cfg``: the cache first, then shipped assets."""
    m, c = cache_dirs(cfg, model_key)
    sm, sc = shipped_dirs(cfg, model_key)
    return (m if (m / "unlearn.json").is_file() else sm), (
        c if (c / "unlearn.json").is_file() else sc
    )


class LoadedPretrained(NamedTuple):
    """The base model and the evaluation classifier, loaded, and where they came from."""

    model: torch.nn.Module
    classifier: Classifier
    paths: Pretrained


def load_pretrained(cfg: Config, model_key: str) -> LoadedPretrained:
    """The base model and classifier for ``cfg``; a clear error when neither exists yet."""
    from unlearn.models import load_model

    m, c = locate(cfg, model_key)
    if m is None or c is None:
        missing = "base model" if m is None else "classifier"
        raise ConfigError(
            f"model: no pretrained {missing} for this config; run "
            f"`unlearn pretrain --config <your config>` first"
        )
    acc = json.loads((c / "metrics.json").read_text())["heldout_accuracy"]
    return LoadedPretrained(load_model(m), load_model(c), Pretrained(m, c, acc))
