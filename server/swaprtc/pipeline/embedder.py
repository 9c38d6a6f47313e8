"""ArcFace identity embedder: aligned 112 crop, (RGB - 127.5) / 127.5, L2-normalised output."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from swaprtc.inference.local import as_runner
from swaprtc.inference.runner import ModelRunner
from swaprtc.pipeline.aligner import estimate_arcface, warp_crop


class ArcFaceEmbedder:
    def __init__(self, runner: ModelRunner | ort.InferenceSession) -> None:
        self.runner = as_runner(runner)
        inp = self.runner.inputs[0]
        self.input_name = inp.name
        self.size = inp.spatial_size(default=112)
        self.dtype = inp.dtype

    def crop(self, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
        return warp_crop(frame, estimate_arcface(kps, self.size), self.size)

    def blob(self, crops: list[np.ndarray]) -> np.ndarray:
        rgb = np.stack(crops)[..., ::-1].astype(np.float32)
        return np.ascontiguousarray(((rgb - 127.5) / 127.5).transpose(0, 3, 1, 2), dtype=self.dtype)

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, D) L2-normalised embeddings of aligned BGR crops, in calls of at most the runner's
        batch limit (exported models often fix the batch at 1)."""
        step = max(1, self.runner.max_batch)
        out = []
        for i in range(0, len(crops), step):
            emb = self.runner.run({self.input_name: self.blob(crops[i : i + step])})[0]
            out.append(np.asarray(emb, dtype=np.float32).reshape(len(crops[i : i + step]), -1))
        embs = np.concatenate(out)
        norms = np.linalg.norm(embs, axis=1, keepdims=True)
        return embs / np.maximum(norms, 1e-12)

    def embed(self, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """(D,) normalised embedding of the face with keypoints ``kps`` in ``frame``."""
        return self.embed_crops([self.crop(frame, kps)])[0]
