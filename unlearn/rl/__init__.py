"""RLlib (new API stack) training and evaluation of λ policies on the unlearning env.

Everything here imports ray inside its functions; ``import unlearn.rl`` stays light.
The exported policies these produce load without ray (:mod:`unlearn.export`).
"""

from __future__ import annotations

__all__ = ["callbacks", "evaluate", "train"]
