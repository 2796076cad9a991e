"""The one shape of an evaluation result, whatever the model family.

Every family's result (:class:`~unlearn.metrics.evaluate.EvalResult` for the image
families, :class:`~unlearn.metrics.t2i.T2IEvalResult` for text-to-image) satisfies
:class:`ModelEvaluation`, so the report, the bench and the audit read the primary rate, FID,
the flat metrics and the table columns without asking which family made it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ModelEvaluation(Protocol):
    """What every family's evaluation result provides.

    Attributes:
        primary_name: what the primary rate measures (``forget_rate``, ``outlier_rate`` or
            ``concept_rate``), the name its column carries.
        primary_rate: the fraction of samples that still show what was forgotten.
        forget_rate: the primary rate under the name every driver reads (tune objective,
            bench cells, the env's final reward).
        fid: Fréchet distance of the samples to held-out retain data.
        table_keys: the attributes a results table shows, in order.
    """

    num_samples: int
    fid: float

    @property
    def primary_name(self) -> str: ...

    @property
    def primary_rate(self) -> float: ...

    @property
    def forget_rate(self) -> float: ...

    @property
    def table_keys(self) -> tuple[str, ...]: ...

    def metrics(self, prefix: str = "eval/") -> dict[str, float]: ...

    def to_dict(self) -> dict: ...
