"""Face detectors: RetinaFace-MNet0.25 (embedded default) and SCRFD-10G-KPS.

Both letterbox the frame into the top-left of a zero-padded square, decode boxes and five
keypoints in the model's coordinates, run NMS and divide by the letterbox scale.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from swaprtc.inference.local import as_runner
from swaprtc.inference.runner import ModelRunner
from swaprtc.types import Face

STRIDES = (8, 16, 32)
RETINA_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
RETINA_VARIANCES = (0.1, 0.2)
RETINA_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


class Detector(Protocol):
    def detect(self, frame: np.ndarray) -> list[Face]: ...


def _resized(frame: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The frame resized keeping aspect ratio so its long side is ``size``, and the scale."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(frame, (nw, nh), interpolation=interp), scale


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize keeping aspect ratio into the top-left of a size×size zero canvas."""
    resized, scale = _resized(frame, size)
    canvas = np.zeros((size, size, 3), dtype=frame.dtype)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas, scale


def fit_to_strides(frame: np.ndarray, size: int, multiple: int = 32) -> tuple[np.ndarray, float]:
    """Resize keeping aspect ratio so the long side is ``size``, into the top-left of a zero canvas
    padded only up to a multiple of ``multiple`` on each side (not to a square)."""
    resized, scale = _resized(frame, size)
    nh, nw = resized.shape[:2]
    canvas = np.zeros((-(-nh // multiple) * multiple, -(-nw // multiple) * multiple, 3), dtype=frame.dtype)
    canvas[:nh, :nw] = resized
    return canvas, scale


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS on (N, 4) x1y1x2y2 boxes; returns kept indices, best score first."""
    order = scores.argsort()[::-1]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        ovr = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[ovr <= iou]
    return np.asarray(keep, dtype=np.int64)


def _to_faces(
    boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, scale: float, nms_iou: float
) -> list[Face]:
    if boxes.shape[0] == 0:
        return []
    keep = nms(boxes, scores, nms_iou)
    faces = [
        Face(
            bbox=(boxes[i] / scale).astype(np.float32),
            score=float(scores[i]),
            kps=(kps[i].reshape(5, 2) / scale).astype(np.float32),
        )
        for i in keep
    ]
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


@lru_cache(maxsize=8)
def retina_priors(height: int, width: int) -> np.ndarray:
    """(P, 4) priors cx, cy, w, h in pixels for a height×width input, cell-major (rows, then
    columns) with the min sizes of a cell adjacent."""
    out = []
    for stride, sizes in zip(STRIDES, RETINA_MIN_SIZES, strict=True):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        for_cell = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (rows * cols, 1))
        out.append(np.hstack([for_cell, wh]))
    return np.concatenate(out).astype(np.float32)


class _Detector:
    """What both detectors share: one letterboxed square input, a score threshold and NMS."""

    def __init__(
        self,
        runner: ModelRunner | ort.InferenceSession,
        input_size: int = 640,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
    ) -> None:
        self.runner = as_runner(runner)
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.input_name = self.runner.inputs[0].name
        self._bind_outputs([o.name for o in self.runner.outputs])

    def _bind_outputs(self, names: list[str]) -> None:
        """Check the model's outputs (and note their order) once, at construction."""


class RetinaFaceDetector(_Detector):
    """RetinaFace-MNet0.25: input BGR - (104, 117, 123); outputs loc, conf (softmaxed), landmarks."""

    def _bind_outputs(self, names: list[str]) -> None:
        # Outputs are matched by name where the model names them, else by position.
        self._order = [
            names.index(n) if n in names else i for i, n in enumerate(("loc", "conf", "landmarks"))
        ]

    def _input(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The model's input picture and its scale: the frame letterboxed into a square."""
        return letterbox(frame, self.input_size)

    def detect(self, frame: np.ndarray) -> list[Face]:
        image, scale = self._input(frame)
        blob = (image.astype(np.float32) - RETINA_MEAN_BGR).transpose(2, 0, 1)[None]
        outs = self.runner.run({self.input_name: np.ascontiguousarray(blob)})
        loc, conf, landms = (outs[i][0] for i in self._order)
        scores = conf[:, 1]
        mask = scores > self.score_threshold
        if not mask.any():
            return []
        priors = retina_priors(image.shape[0], image.shape[1])[mask]
        loc, landms, scores = loc[mask], landms[mask], scores[mask]
        v0, v1 = RETINA_VARIANCES
        centre = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
        wh = priors[:, 2:] * np.exp(loc[:, 2:] * v1)
        boxes = np.hstack([centre - wh / 2, centre + wh / 2])
        pts = priors[:, None, :2] + landms.reshape(-1, 5, 2) * v0 * priors[:, None, 2:]
        return _to_faces(boxes, scores, pts.reshape(-1, 10), scale, self.nms_iou)


class RetinaFaceFitDetector(RetinaFaceDetector):
    """RetinaFace on the frame padded only to the strides' multiple, not to a square: a 4:3 frame
    costs ~3/4 of the square input's time, a 16:9 one ~3/5. Its boxes differ from the square
    input's by fractions of a pixel (the padding the network sees differs)."""

    def _input(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        return fit_to_strides(frame, self.input_size, STRIDES[-1])


def scrfd_heads(outputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(scores, boxes, keypoints) per stride 8, 16, 32 from SCRFD's 9 outputs in any order.

    Exports differ in output order, so each output is placed by its shape: the last dimension says
    what it is (1 score, 4 box distances, 10 keypoint offsets) and the anchor count which stride
    (stride 8 has the most anchors, stride 32 the fewest).
    """
    groups: dict[int, list[np.ndarray]] = {1: [], 4: [], 10: []}
    for out in outputs:
        width = out.shape[-1] if out.ndim else 0
        if width not in groups:
            raise ValueError(f"unexpected SCRFD output of shape {out.shape}")
        groups[width].append(out.reshape(-1, width))
    for width, group in groups.items():
        if len(group) != len(STRIDES):
            raise ValueError(
                f"SCRFD model must give {len(STRIDES)} outputs of width {width}, got {len(group)}"
            )
        group.sort(key=len, reverse=True)
    return list(zip(groups[1], groups[4], groups[10], strict=True))


class ScrfdDetector(_Detector):
    """SCRFD-10G-KPS: input (RGB - 127.5) / 128; 9 outputs (scores, boxes, kps per stride)."""

    def _bind_outputs(self, names: list[str]) -> None:
        if len(names) != 9:
            raise ValueError("SCRFD model must have 9 outputs (scores, boxes, kps for 3 strides)")

    @staticmethod
    @lru_cache(maxsize=16)
    def _centres(size: int, stride: int) -> np.ndarray:
        n = size // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        centres = np.stack([xs.ravel() * stride, ys.ravel() * stride], axis=1).astype(np.float32)
        return np.repeat(centres, 2, axis=0)  # two anchors per cell

    def detect(self, frame: np.ndarray) -> list[Face]:
        image, scale = letterbox(frame, self.input_size)
        blob = cv2.dnn.blobFromImage(
            image,
            1.0 / 128.0,
            (self.input_size, self.input_size),
            (127.5, 127.5, 127.5),
            swapRB=True,
        )
        outs = scrfd_heads(self.runner.run({self.input_name: blob}))
        all_boxes, all_scores, all_kps = [], [], []
        for (scores, dist, kps), stride in zip(outs, STRIDES, strict=True):
            scores = scores.reshape(-1)
            dist = dist.reshape(-1, 4) * stride
            kps = kps.reshape(-1, 10) * stride
            mask = scores >= self.score_threshold
            if not mask.any():
                continue
            c = self._centres(self.input_size, stride)[mask]
            d = dist[mask]
            all_boxes.append(np.hstack([c - d[:, :2], c + d[:, 2:]]))
            all_kps.append(np.tile(c, 5) + kps[mask])
            all_scores.append(scores[mask])
        if not all_scores:
            return []
        return _to_faces(
            np.concatenate(all_boxes),
            np.concatenate(all_scores),
            np.concatenate(all_kps),
            scale,
            self.nms_iou,
        )
