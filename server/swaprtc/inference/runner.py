"""The runner interface every model call goes through.

A runner takes named input arrays and returns its outputs in declaration order. The pipeline stages
(detector, embedder, swapper, enhancer) only see this interface, so the same stage code runs on a
local ONNX Runtime session, on a remote inference server, or behind the batching scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, shape (None where a dimension is dynamic), dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: type[np.generic]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def spatial_size(self, default: int) -> int:
        """Height of an NCHW input; ``default`` when the model leaves it dynamic."""
        if self.rank == 4 and self.shape[2] is not None and self.shape[2] > 0:
            return int(self.shape[2])
        return default


@runtime_checkable
class ModelRunner(Protocol):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch: int  # 1 = the batch axis is fixed at 1; more = inputs may stack that many along axis 0

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in ``outputs`` order for ``feeds`` keyed by input name. Thread-safe."""
        ...


def describe_runner(runner: ModelRunner) -> dict[str, object]:
    """What a runner says about itself (providers in use, batching, ...), for /api/info and bench.
    ``describe`` is optional: runners that lack it are reported by their type and batch limit."""
    describe = getattr(runner, "describe", None)
    if callable(describe):
        info = describe()
        if isinstance(info, dict):
            return info
    return {"runner": type(runner).__name__, "max_batch": runner.max_batch}


def runner_providers(runner: ModelRunner) -> list[str]:
    """Execution providers really in use behind a runner, when it can tell (else empty)."""
    providers = describe_runner(runner).get("providers")
    return [str(p) for p in providers] if isinstance(providers, list) else []
