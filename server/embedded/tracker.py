"""Per-stream face tracking: detector on the first frame, every N frames and when tracking is lost;
in between, each face's ROI comes from its previous mesh (MediaPipe's tracking scheme)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from server.embedded import mesh as m
from server.embedded.landmarks import FaceMeshModel, Roi, roi_from_detection, roi_from_mesh
from server.embedded.smoothing import MeshFilter
from server.pipeline.detector import Detector

PRESENCE_THRESHOLD = 0.5  # face-presence probability below which a track is lost
MATCH_IOU = 0.3  # a detection this close to a track is the same face
DUPLICATE_IOU = 0.5  # two tracks this close have converged on one face


ROI_HOLD = 0.03  # keep the previous ROI while the new one differs by less than this (relative)


def _stable_roi(old: Roi, new: Roi) -> Roi:
    """The previous ROI while the face has not really moved, else the new one.

    The landmark network is not exactly equivariant to its crop, so re-deriving the ROI from each
    mesh makes a feedback loop that drifts the mesh by fractions of a pixel for a second or so;
    holding the crop still makes a still face give the same mesh frame after frame.
    """
    moved = np.hypot(new.cx - old.cx, new.cy - old.cy) / old.size
    resized = abs(new.size / old.size - 1.0)
    turned = abs(new.angle - old.angle)
    return old if max(moved, resized, turned) < ROI_HOLD else new


@dataclass
class Track:
    roi: Roi
    filter: MeshFilter = field(default_factory=MeshFilter)
    mesh: np.ndarray | None = None  # smoothed mesh of the last frame
    score: float = 0.0
    fresh: bool = True  # just created from a detection: refine its ROI once

    @property
    def bbox(self) -> np.ndarray:
        if self.mesh is not None:
            return m.mesh_bbox(self.mesh)
        half = self.roi.size / 2 / 1.5
        return np.array([self.roi.cx - half, self.roi.cy - half, self.roi.cx + half, self.roi.cy + half],
                        dtype=np.float32)


@dataclass(frozen=True)
class TrackedFace:
    mesh: np.ndarray  # (468, 2) float32, smoothed
    score: float


class FaceTracker:
    """Not thread-safe: one per stream."""

    def __init__(self, detector: Detector, mesh_model: FaceMeshModel, detect_every: int = 5,
                 fps: float = 30.0) -> None:
        self.detector = detector
        self.mesh_model = mesh_model
        self.detect_every = max(1, int(detect_every))
        self.fps = fps
        self.tracks: list[Track] = []
        self.frame_index = 0
        self.detector_calls = 0
        self._since_detect = 0

    def reset(self) -> None:
        self.tracks = []
        self._since_detect = 0

    def update(self, frame: np.ndarray, many: bool) -> tuple[list[TrackedFace], dict[str, float]]:
        """Faces in this frame (largest first) and the time spent per stage (ms)."""
        timings = {"detect": 0.0, "landmarks": 0.0}
        t_now = self.frame_index / self.fps
        self.frame_index += 1
        detected = False
        if not self.tracks or self._since_detect >= self.detect_every - 1:
            self._detect(frame, many, timings)
            detected = True
        else:
            self._since_detect += 1
        faces = self._track(frame, t_now, timings)
        if not faces and not detected:
            # Lost every face between detections (it moved far or left): look again right away.
            self._detect(frame, many, timings)
            faces = self._track(frame, t_now, timings)
        return faces, timings

    def _detect(self, frame: np.ndarray, many: bool, timings: dict[str, float]) -> None:
        start = time.perf_counter()
        found = self.detector.detect(frame)
        timings["detect"] += (time.perf_counter() - start) * 1000
        self.detector_calls += 1
        self._since_detect = 0
        if not many:
            found = found[:1]
        kept: list[Track] = []
        for face in found:
            match = next((t for t in self.tracks if m.box_iou(t.bbox, face.bbox) > MATCH_IOU), None)
            if match is not None and match not in kept:
                kept.append(match)  # its mesh-based ROI is better than a fresh box
            else:
                kept.append(Track(roi=roi_from_detection(face.bbox, face.kps)))
        if many or not found:
            # Faces the detector missed this time stay while their landmarks still see a face.
            kept += [t for t in self.tracks if t not in kept]
        self.tracks = kept

    def _track(self, frame: np.ndarray, t_now: float, timings: dict[str, float]) -> list[TrackedFace]:
        start = time.perf_counter()
        alive: list[Track] = []
        for track in self.tracks:
            mesh, score = self.mesh_model.run(frame, track.roi)
            if track.fresh:
                # A detector box frames the face differently from a mesh ROI: re-run on the mesh's
                # own ROI until it settles, so the smoothing filter starts from the mesh the next
                # frames will reproduce (otherwise a still face visibly settles for half a second).
                for _ in range(3):
                    settled = _stable_roi(track.roi, roi_from_mesh(mesh))
                    if settled is track.roi:
                        break
                    track.roi = settled
                    mesh, score = self.mesh_model.run(frame, track.roi)
                track.fresh = False
            if score < PRESENCE_THRESHOLD:
                continue
            box = m.mesh_bbox(mesh)
            size = float(max(box[2] - box[0], box[3] - box[1]))
            track.mesh = track.filter(mesh, t_now, size)
            track.score = score
            track.roi = _stable_roi(track.roi, roi_from_mesh(track.mesh))
            if any(m.box_iou(track.bbox, other.bbox) > DUPLICATE_IOU for other in alive):
                continue
            alive.append(track)
        alive.sort(key=lambda t: float(np.prod(t.bbox[2:] - t.bbox[:2])), reverse=True)
        self.tracks = alive
        timings["landmarks"] += (time.perf_counter() - start) * 1000
        return [TrackedFace(t.mesh, t.score) for t in alive if t.mesh is not None]
