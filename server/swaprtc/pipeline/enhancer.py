"""GFPGAN v1.4 face restoration at 512: FFHQ-aligned crop, (RGB/255 - 0.5)/0.5 in, [-1, 1] out.

The restored crop is mixed with the unrestored crop by ``blend`` (1 = fully restored) before it is
pasted back, which keeps some of the original texture and hides GFPGAN's over-smoothing.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from swaprtc.inference.local import as_runner
from swaprtc.inference.runner import ModelRunner
from swaprtc.pipeline.aligner import estimate_ffhq, warp_crop
from swaprtc.pipeline.paste import paste_into


class GfpganEnhancer:
    def __init__(self, runner: ModelRunner | ort.InferenceSession) -> None:
        self.runner = as_runner(runner)
        inp = self.runner.inputs[0]
        self.input_name = inp.name
        self.size = inp.spatial_size(default=512)
        self.dtype = inp.dtype

    def restore_many(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Restore FFHQ-aligned BGR uint8 crops (one call per runner batch); same sizes back."""
        step = max(1, self.runner.max_batch)
        out: list[np.ndarray] = []
        for i in range(0, len(crops), step):
            rgb = np.stack(crops[i : i + step])[..., ::-1].astype(np.float32)
            blob = ((rgb / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2)
            res = self.runner.run({self.input_name: np.ascontiguousarray(blob, self.dtype)})[0]
            img = (np.clip(np.asarray(res, dtype=np.float32), -1.0, 1.0) + 1.0) * 127.5
            batch = (img.transpose(0, 2, 3, 1) + 0.5).astype(np.uint8)[..., ::-1]
            out.extend(np.ascontiguousarray(b) for b in batch)
        return out

    def restore(self, crop: np.ndarray) -> np.ndarray:
        """Restore an FFHQ-aligned BGR uint8 crop; returns a BGR uint8 crop of the same size."""
        return self.restore_many([crop])[0]

    def enhance_crop(self, crop: np.ndarray, blend: float) -> np.ndarray:
        restored = self.restore(crop)
        b = float(np.clip(blend, 0.0, 1.0))
        if b >= 1.0:
            return restored
        mixed = restored.astype(np.float32) * b + crop.astype(np.float32) * (1.0 - b)
        return (mixed + 0.5).astype(np.uint8)

    def enhance_into(self, frame: np.ndarray, kps: np.ndarray, blend: float) -> None:
        """Restore the face with keypoints ``kps`` in ``frame``, in place."""
        m = estimate_ffhq(kps, self.size)
        crop = warp_crop(frame, m, self.size)
        paste_into(frame, self.enhance_crop(crop, blend), m)
