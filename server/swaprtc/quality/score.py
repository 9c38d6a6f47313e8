"""Identity transfer scores from face descriptor distances; pure functions."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAME_PERSON = 0.6  # dlib's convention: descriptors closer than this are the same person
# The pipeline and the recognizer are deterministic (two runs give the same figures to the last
# digit), but a median over a few dozen pairs moves by ~0.01 when a small change of the swap moves
# a few pairs across it. A bootstrap interval over the pairs says how far: resamples with a fixed
# seed, so the interval is as reproducible as the median itself.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class PairScore:
    d_src_tgt: float
    d_out_src: float
    d_out_tgt: float

    @property
    def id_transfer(self) -> float:
        """0 = the target's identity, 1 = the source's, > 0.5 = closer to the source."""
        return 0.5 * (1.0 + (self.d_out_tgt - self.d_out_src) / max(self.d_src_tgt, 1e-6))

    @property
    def closer_to_source(self) -> bool:
        return self.d_out_src < self.d_out_tgt

    @property
    def as_source(self) -> bool:
        return self.d_out_src < SAME_PERSON

    @property
    def as_target(self) -> bool:
        return self.d_out_tgt < SAME_PERSON

    def row(self) -> dict[str, float | bool]:
        return {
            "id_transfer": round(self.id_transfer, 4),
            "d_out_src": round(self.d_out_src, 4),
            "d_out_tgt": round(self.d_out_tgt, 4),
            "closer_to_source": self.closer_to_source,
            "recognised_as_source": self.as_source,
            "recognised_as_target": self.as_target,
        }


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def summarise(scores: Sequence[PairScore | None]) -> dict[str, float | int | list[float]]:
    """Median id_transfer and the fractions over all pairs; a pair whose output had no
    recognisable face counts as a failure in every fraction (and as 0 id_transfer)."""
    n = len(scores)
    if n == 0:
        return {"pairs": 0}
    ok = [s for s in scores if s is not None]
    transfers = [s.id_transfer for s in ok] + [0.0] * (n - len(ok))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = np.median(rng.choice(np.array(transfers), (BOOTSTRAP_RESAMPLES, n)), axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {
        "pairs": n,
        "no_face_in_output": n - len(ok),
        "median_id_transfer": round(statistics.median(transfers), 4),
        "median_id_transfer_95": [round(float(low), 4), round(float(high), 4)],  # bootstrap
        "mean_id_transfer": round(statistics.fmean(transfers), 4),
        "closer_to_source": round(sum(s.closer_to_source for s in ok) / n, 4),
        "recognised_as_source": round(sum(s.as_source for s in ok) / n, 4),
        "recognised_as_target": round(sum(s.as_target for s in ok) / n, 4),
    }
