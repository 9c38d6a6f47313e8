"""ArcFace identity embedder: aligned 112 crop, (RGB - 127.5) / 127.5, L2-normalised output."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from swaprtc.pipeline.aligner import estimate_arcface, warp_crop
from swaprtc.pipeline.onnx_io import input_size, numpy_dtype


class ArcFaceEmbedder:
    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = session.get_outputs()[0].name
        self.size = input_size(inp, default=112)
        self.dtype = numpy_dtype(inp)

    def crop(self, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
        return warp_crop(frame, estimate_arcface(kps, self.size), self.size)

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, D) L2-normalised embeddings of aligned BGR crops (one model call per crop, because
        the exported models often fix the batch to 1)."""
        out = []
        for crop in crops:
            rgb = crop[:, :, ::-1].astype(np.float32)
            blob = ((rgb - 127.5) / 127.5).transpose(2, 0, 1)[None]
            emb = self.session.run([self.output_name], {self.input_name: blob.astype(self.dtype)})[0]
            out.append(np.asarray(emb, dtype=np.float32).reshape(-1))
        embs = np.stack(out)
        norms = np.linalg.norm(embs, axis=1, keepdims=True)
        return embs / np.maximum(norms, 1e-12)

    def embed(self, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """(D,) normalised embedding of the face with keypoints ``kps`` in ``frame``."""
        return self.embed_crops([self.crop(frame, kps)])[0]
