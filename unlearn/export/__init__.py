"""Exported λ policies: checkpoint → TorchScript / ONNX file + JSON metadata, and back.

Loading (:func:`load_policy`) needs torch or onnxruntime only; exporting from an RLlib
checkpoint (:func:`unlearn.export.rllib.export_policy`) imports ray inside the function.
"""

from __future__ import annotations

from unlearn.export.policy_file import FILES, METADATA, LoadedPolicy, load_policy, read_metadata

__all__ = ["FILES", "METADATA", "LoadedPolicy", "load_policy", "read_metadata"]
