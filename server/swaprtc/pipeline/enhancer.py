"""GFPGAN v1.4 face restoration at 512: FFHQ-aligned crop, (RGB/255 - 0.5)/0.5 in, [-1, 1] out.

The restored crop is mixed with the unrestored crop by ``blend`` (1 = fully restored) before it is
pasted back, which keeps some of the original texture and hides GFPGAN's over-smoothing.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from swaprtc.pipeline.aligner import estimate_ffhq, warp_crop
from swaprtc.pipeline.onnx_io import input_size, numpy_dtype
from swaprtc.pipeline.paste import paste_into


class GfpganEnhancer:
    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = session.get_outputs()[0].name
        self.size = input_size(inp, default=512)
        self.dtype = numpy_dtype(inp)

    def restore(self, crop: np.ndarray) -> np.ndarray:
        """Restore an FFHQ-aligned BGR uint8 crop; returns a BGR uint8 crop of the same size."""
        rgb = crop[:, :, ::-1].astype(np.float32)
        blob = ((rgb / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(blob, self.dtype)})
        img = (np.clip(np.asarray(out[0][0], dtype=np.float32), -1.0, 1.0) + 1.0) * 127.5
        return np.ascontiguousarray((img.transpose(1, 2, 0) + 0.5).astype(np.uint8)[:, :, ::-1])

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
