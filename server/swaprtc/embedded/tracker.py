"""Per-stream face tracking: detector on the first frame, every N frames and when tracking is lost;
in between, each face's ROI comes from its previous mesh (MediaPipe's tracking scheme).

Faces the detector finds but the tracker cannot follow (the mesh rejects a profile or a covered
face; one-face mode leaves the others) are reported as ``untracked`` so the caller can hide them.
They have no mesh to follow them, so while there are any the detector runs on every frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from swaprtc.embedded import mesh as m
from swaprtc.embedded.landmarks import FaceMeshModel, Roi, roi_from_detection, roi_from_mesh
from swaprtc.embedded.smoothing import MeshFilter
from swaprtc.pipeline.detector import Detector
from swaprtc.types import Face

PRESENCE_THRESHOLD = 0.5  # face-presence probability below which a track is lost
# In one-face mode, while the face is followed with at least this presence, the detector (which
# only finds new faces) runs every ``detect_every_tracked`` frames instead of ``detect_every``.
SURE_PRESENCE = 0.9
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
    depth: np.ndarray | None = None  # (468,) smoothed depth of the same points (frame pixels)
    score: float = 0.0
    fresh: bool = True  # just created from a detection: refine its ROI once
    id: int = 0  # unique within its tracker, stable while the face is followed
    detection: Face | None = None  # the detector's face for this track, on frames the detector ran

    @property
    def bbox(self) -> np.ndarray:
        if self.mesh is not None:
            return m.mesh_bbox(self.mesh)
        half = self.roi.size / 2 / 1.5
        return np.array(
            [self.roi.cx - half, self.roi.cy - half, self.roi.cx + half, self.roi.cy + half], dtype=np.float32
        )


@dataclass(frozen=True)
class TrackedFace:
    mesh: np.ndarray  # (468, 2) float32, smoothed
    score: float
    track_id: int = 0
    detection: Face | None = None  # set on frames where the detector ran and found this face
    depth: np.ndarray | None = None  # (468,) float32 depth of the mesh points, smoothed alike


@dataclass(frozen=True)
class TrackUpdate:
    faces: list[TrackedFace]  # followed by their mesh, largest first
    untracked: list[Face]  # found by this frame's detector run but not followed (no mesh)
    timings_ms: dict[str, float]


class FaceTracker:
    """Not thread-safe: one per stream."""

    def __init__(
        self,
        detector: Detector,
        mesh_model: FaceMeshModel,
        detect_every: int = 5,
        fps: float = 30.0,
        smoothing: bool = True,
        detect_every_tracked: int | None = None,
        sure_detector: Detector | None = None,
    ) -> None:
        self.detector = detector
        # The periodic runs while the one face is followed surely, which only look for a new face:
        # may be a cheaper input (the tracks and so the swap do not depend on its exact boxes).
        self.sure_detector = sure_detector or detector
        # Off where the mesh only carries other points (the neural engine): the filter's lag on a
        # moving face would misplace them, and the detector's points are steadier than the mesh.
        self.smoothing = smoothing
        self.mesh_model = mesh_model
        self.detect_every = max(1, int(detect_every))
        self.detect_every_tracked = max(self.detect_every, int(detect_every_tracked or detect_every))
        self.fps = fps  # nominal rate: the time step when a frame comes without a timestamp
        self.tracks: list[Track] = []
        self.detector_calls = 0
        self.mesh_calls = 0
        self._since_detect = 0
        self._untracked: list[Face] = []
        self._t: float | None = None
        self._next_id = 0

    def reset(self) -> None:
        self.tracks = []
        self._untracked = []
        self._since_detect = 0

    def _clock(self, timestamp_s: float | None) -> float:
        """The frame's time: its own timestamp, else one nominal frame after the previous one."""
        if timestamp_s is None:
            timestamp_s = 0.0 if self._t is None else self._t + 1.0 / self.fps
        self._t = float(timestamp_s)
        return self._t

    def update(self, frame: np.ndarray, many: bool, timestamp_s: float | None = None) -> TrackUpdate:
        """Faces in this frame and the time spent per stage (ms). ``timestamp_s`` is the frame's
        presentation time; the smoothing filter uses the real time between frames."""
        timings = {"detect": 0.0, "landmarks": 0.0}
        t_now = self._clock(timestamp_s)
        found: list[Face] | None = None
        for track in self.tracks:
            track.detection = None
        if self.due(many):
            sure = bool(self.tracks) and not self._untracked and self._sure(many)
            found = self._detect(frame, many, timings, self.sure_detector if sure else self.detector)
        else:
            self._since_detect += 1
        tracks = self.tracks
        alive = self._track(frame, t_now, tracks, [], timings)
        if found is None and any(t.score < PRESENCE_THRESHOLD for t in tracks):
            # A face was lost between detections (it moved far, turned, was covered or left): look
            # again right away, so that a face still there is followed again or at least reported.
            self.tracks = alive
            found = self._detect(frame, many, timings, self.detector)
            kept_alive = [t for t in self.tracks if t in alive]
            alive = self._track(frame, t_now, [t for t in self.tracks if t not in alive], kept_alive, timings)
        self.tracks = alive
        faces = [
            TrackedFace(t.mesh, t.score, t.id, t.detection, t.depth) for t in alive if t.mesh is not None
        ]
        untracked = (
            []
            if found is None
            else [f for f in found if not any(m.box_iou(t.bbox, f.bbox) > MATCH_IOU for t in alive)]
        )
        self._untracked = untracked
        return TrackUpdate(faces, untracked, timings)

    def due(self, many: bool) -> bool:
        """Whether the next ``update`` runs the detector."""
        if not self.tracks or self._untracked:
            return True
        every = self.detect_every_tracked if self._sure(many) else self.detect_every
        return self._since_detect >= every - 1

    def _sure(self, many: bool) -> bool:
        """One-face mode with its face followed surely: the detector only looks for a new face."""
        return not many and all(t.score >= SURE_PRESENCE for t in self.tracks)

    def follow(self, meshes: dict[int, np.ndarray], timestamp_s: float | None = None) -> TrackUpdate:
        """A frame where the caller measured each face's motion itself (engine.py's reuse frames):
        the tracks take the meshes it moved, keyed by track id, and no model runs. Every track
        must be in ``meshes``; the smoothing filter keeps its state for the next measured mesh."""
        self._clock(timestamp_s)
        self._since_detect += 1
        for track in self.tracks:
            track.detection = None
            track.mesh = meshes[track.id]
            track.roi = _stable_roi(track.roi, roi_from_mesh(track.mesh))
        faces = [TrackedFace(t.mesh, t.score, t.id, None, t.depth) for t in self.tracks if t.mesh is not None]
        return TrackUpdate(faces, [], {"detect": 0.0, "landmarks": 0.0})

    def _detect(
        self, frame: np.ndarray, many: bool, timings: dict[str, float], detector: Detector
    ) -> list[Face]:
        """Run ``detector`` and update the track list from it; returns every face it found."""
        start = time.perf_counter()
        found = detector.detect(frame)
        timings["detect"] += (time.perf_counter() - start) * 1000
        self.detector_calls += 1
        self._since_detect = 0
        chosen = found if many else found[:1]
        kept: list[Track] = []
        for face in chosen:
            match = next((t for t in self.tracks if m.box_iou(t.bbox, face.bbox) > MATCH_IOU), None)
            if match is not None and match not in kept:
                match.detection = face
                kept.append(match)  # its mesh-based ROI is better than a fresh box
            else:
                self._next_id += 1
                kept.append(
                    Track(roi=roi_from_detection(face.bbox, face.kps), id=self._next_id, detection=face)
                )
        if many or not chosen:
            # Faces the detector missed this time stay while their landmarks still see a face.
            kept += [t for t in self.tracks if t not in kept]
        self.tracks = kept
        return found

    def _track(
        self,
        frame: np.ndarray,
        t_now: float,
        tracks: list[Track],
        alive: list[Track],
        timings: dict[str, float],
    ) -> list[Track]:
        """Run the mesh on ``tracks``; returns ``alive`` plus those still seeing a face, largest first."""
        start = time.perf_counter()
        alive = list(alive)
        for track in tracks:
            mesh, score = self.mesh_model.run3d(frame, track.roi)
            self.mesh_calls += 1
            if track.fresh:
                # A detector box frames the face differently from a mesh ROI: re-run on the mesh's
                # own ROI until it settles, so the smoothing filter starts from the mesh the next
                # frames will reproduce (otherwise a still face visibly settles for half a second).
                for _ in range(3):
                    settled = _stable_roi(track.roi, roi_from_mesh(mesh))
                    if settled is track.roi:
                        break
                    track.roi = settled
                    mesh, score = self.mesh_model.run3d(frame, track.roi)
                    self.mesh_calls += 1
                track.fresh = False
            track.score = score
            if score < PRESENCE_THRESHOLD:
                continue
            box = m.mesh_bbox(mesh)
            size = float(max(box[2] - box[0], box[3] - box[1]))
            smoothed = track.filter(mesh, t_now, size) if self.smoothing else mesh
            track.mesh, track.depth = np.ascontiguousarray(smoothed[:, :2]), smoothed[:, 2].copy()
            track.roi = _stable_roi(track.roi, roi_from_mesh(track.mesh))
            if any(m.box_iou(track.bbox, other.bbox) > DUPLICATE_IOU for other in alive):
                continue
            alive.append(track)
        alive.sort(key=lambda t: float(np.prod(t.bbox[2:] - t.bbox[:2])), reverse=True)
        timings["landmarks"] += (time.perf_counter() - start) * 1000
        return alive
