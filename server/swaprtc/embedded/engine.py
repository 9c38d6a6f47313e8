"""The embedded engine: a real face swap from two small permissively licensed models, live on a CPU.

RetinaFace-MNet0.25 finds faces and MediaPipe's face mesh gives 468 landmarks with depth. The
source's whole inner face (brows, eyes, nose, lips, cheeks) is warped onto the target's live mesh
triangle by triangle, with the target's features moved part of the way towards the source's
proportions (swap.py, shape.py); triangles the source photo hides are textured from their mirror
images (source.py). Colour and light are matched to the target's skin and the face is blended in
without a seam (color.py, blend.py). The target's own eye and mouth interiors are kept only while
they close or open (blend.py). No identity network runs, so it needs no GPU and no large download.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from swaprtc.embedded import mesh as m
from swaprtc.embedded.landmarks import FaceMeshModel, roi_from_detection, roi_from_mesh
from swaprtc.embedded.motion import MotionAnchor, anchor, estimate, move_points
from swaprtc.embedded.reuse import ReusableFace, composite_moved, frame_coords, reusable
from swaprtc.embedded.scaled import render_bounded
from swaprtc.embedded.source import HIDDEN_WARNING, SourceTexture, prepare_texture
from swaprtc.embedded.swap import FaceLayer, composite_layer
from swaprtc.embedded.tracker import PRESENCE_THRESHOLD, FaceTracker, TrackUpdate
from swaprtc.engine import Casting, single_source
from swaprtc.errors import ModelError, NoFaceError
from swaprtc.faces import check_frame, face_thumbnail
from swaprtc.inference.runner import runner_providers
from swaprtc.inference.sessions import RuntimeOptions, create_session
from swaprtc.pipeline.detector import RetinaFaceDetector, RetinaFaceFitDetector
from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

NAME = "embedded"
CONTROLS = (  # live settings (SwapOptions keys) this engine acts on
    "many_faces",
    "strength",
    "shape",
    "mouth_mask",
    "mouth_mask_padding",
    "mouth_mask_blur",
)
DETECTOR_MODEL = "retinaface_mnet025"
LANDMARK_MODEL = "face_landmark"
# SHA-256 of the ONNX file convert_face_landmark() makes from the pinned face_landmark.tflite.
CONVERTED_LANDMARK_SHA256 = "08e3d7445ee97f1969766762a62baf6d3899c6e5c64974f1240d5ec84a9dbd74"
# Largest expression change (motion.Motion.change, face sizes) a reused keyframe still stands for
# once its ``swap_every`` frames are up: under a pixel on a 480p webcam face. Tracking noise on a still
# face stays well below it; speech and blinks go above it within a frame or two.
STILL_CHANGE = 0.004


def make_session(model: Path | str | bytes, threads: int) -> ort.InferenceSession:
    """A CPU session: these models are small, so a GPU round trip would cost more than it saves."""
    label = "the converted face mesh model" if isinstance(model, bytes) else str(model)
    options = RuntimeOptions(intra_op_threads=threads, inter_op_threads=1, sequential=True)
    return create_session(model, options, label=label)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def converted_landmark_model(tflite_path: Path) -> Path | bytes:
    """The ONNX conversion of face_landmark.tflite: made once next to it and reused, or kept in
    memory when the models folder is read-only."""
    onnx_path = tflite_path.with_suffix(".onnx")
    if onnx_path.is_file() and _sha256(onnx_path) == CONVERTED_LANDMARK_SHA256:
        return onnx_path
    try:
        import onnx  # noqa: F401
        import tflite  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"converting {tflite_path.name} to ONNX needs the 'onnx' and 'tflite' packages ({exc}); "
            "install swaprtc with its dependencies, or put the converted face_landmark.onnx "
            f"(SHA-256 {CONVERTED_LANDMARK_SHA256}) next to it",
            code="model_conversion_failed",
        ) from exc
    from swaprtc.embedded.convert import convert_bytes, convert_face_landmark

    try:
        digest = convert_face_landmark(tflite_path, onnx_path)
        result: Path | bytes = onnx_path
    except OSError as exc:
        log.info("cannot write %s (%s); converting the face mesh model in memory", onnx_path, exc)
        result = convert_bytes(tflite_path.read_bytes())
        digest = hashlib.sha256(result).hexdigest()
    if digest != CONVERTED_LANDMARK_SHA256:
        # The input is pinned; a different digest means another onnx version serialised the same
        # graph differently. The graph is still checked by onnx.checker, so use it, but say so.
        log.warning(
            "converted face mesh model has SHA-256 %s, expected %s", digest, CONVERTED_LANDMARK_SHA256
        )
    return result


class EmbeddedEngine:
    name = NAME

    def __init__(
        self,
        detector_session: ort.InferenceSession,
        landmark_session: ort.InferenceSession,
        *,
        detect_every: int = 5,
        track_detect_size: int = 320,
        threads: int = 1,
        max_cells: int = 64,
        swap_every: int = 1,
        detect_every_tracked: int | None = None,
        face_render_px: int = 0,
        swap_every_still: int = 0,
    ) -> None:
        self.detect_every = detect_every
        # One-face mode, face followed surely: the detector is only there to find a new face.
        self.detect_every_tracked = detect_every_tracked or detect_every
        # Full swap every Nth frame; the frames between move its rendered face by the face's motion.
        self.swap_every = max(1, swap_every)
        # While the face holds still (its expression measured unchanged since the keyframe), the
        # keyframe is reused for up to this many frames instead (0: every ``swap_every`` frames
        # whatever the face does). Only with reuse on (swap_every > 1).
        self.swap_every_still = max(self.swap_every, swap_every_still) if self.swap_every > 1 else 1
        # Faces whose box is larger are rendered at this size and scaled up (scaled.py); 0: never.
        self.face_render_px = max(0, face_render_px)
        self.threads = threads
        self.max_cells = max_cells
        # Uploaded photos can be large with small faces: detect at full size there; in a live
        # stream a 320 input is enough for webcam faces and four times cheaper.
        self.source_detector = RetinaFaceDetector(detector_session, input_size=640)
        self.stream_detector = RetinaFaceDetector(detector_session, input_size=track_detect_size)
        # While the one face is followed surely, the detector only looks for a new face: the frame
        # padded to the strides, not to a square (5.2 instead of 7.4 ms at 480p, ~4 at 720p).
        self.sure_detector = RetinaFaceFitDetector(detector_session, input_size=track_detect_size)
        self.mesh_model = FaceMeshModel(landmark_session)

    @classmethod
    def from_paths(
        cls, retinaface_onnx: Path | str, face_landmark: Path | str, *, threads: int = 1, **kwargs: int
    ) -> EmbeddedEngine:
        """From model files; ``face_landmark`` may be the .tflite (converted on first use) or .onnx."""
        landmark: Path | bytes = Path(face_landmark)
        if isinstance(landmark, Path) and landmark.suffix == ".tflite":
            landmark = converted_landmark_model(landmark)
        return cls(
            make_session(retinaface_onnx, threads), make_session(landmark, threads), threads=threads, **kwargs
        )

    @classmethod
    def from_store(cls, store: ModelStore, settings: Settings) -> EmbeddedEngine:
        """Models through the model manager (fetched and SHA-256 checked), one thread per session:
        the models are small enough that intra-op threads cost more than they give, and
        parallelism comes from streams running side by side (``Settings.inference_threads`` sizes
        that pool, so it is deliberately not reused here)."""
        return cls.from_paths(
            store.ensure(DETECTOR_MODEL),
            store.ensure(LANDMARK_MODEL),
            threads=1,
            detect_every=settings.detect_every,
            detect_every_tracked=settings.detect_every_tracked,
            swap_every=settings.swap_every,
            face_render_px=settings.face_render_px,
            swap_every_still=settings.swap_every_still,
        )

    def describe(self) -> dict[str, object]:
        return {
            "engine": NAME,
            "models": {
                "detector": f"{DETECTOR_MODEL} (RetinaFace-MNet0.25, MIT)",
                "landmarks": f"{LANDMARK_MODEL} (MediaPipe face mesh, Apache-2.0, converted to ONNX)",
            },
            "providers": {
                "detector": runner_providers(self.source_detector.runner),
                "landmarks": list(self.mesh_model.session.get_providers()),
            },
            "threads": self.threads,
            "detect_every": self.detect_every,
            "detect_every_tracked": self.detect_every_tracked,
            "swap_every": self.swap_every,
            "swap_every_still": self.swap_every_still,
            "face_render_px": self.face_render_px,
            "method": (
                "whole inner face warped by the live mesh (piecewise affine), shape moved towards the "
                "source, hidden triangles mirrored, colour/light matched, membrane-blended"
            ),
            "enhancer": False,  # the embedded engine has no enhancer: SwapOptions.enhance is ignored
            "controls": list(CONTROLS),
        }

    def detect(self, frame: np.ndarray) -> list[Face]:
        return self.source_detector.detect(frame)

    def source_mesh(self, image: np.ndarray, face: Face) -> tuple[np.ndarray, float]:
        """A still photo's (468, 3) mesh with depth: detector ROI, then twice refined on the
        mesh's own ROI."""
        mesh, score = self.mesh_model.run3d(image, roi_from_detection(face.bbox, face.kps))
        for _ in range(2):
            mesh, score = self.mesh_model.run3d(image, roi_from_mesh(mesh))
        return mesh, score

    def prepare_source(self, image: np.ndarray, face: Face | None = None) -> SourceFace:
        image = check_frame(image)
        faces = self.detect(image)
        if not faces:
            raise NoFaceError("no face found in the source image")
        picked = face if face is not None else faces[0]
        xyz, score = self.source_mesh(image, picked)
        if score < PRESENCE_THRESHOLD:
            raise NoFaceError("the face in the source image is not clear enough to map")
        payload = prepare_texture(image, xyz)
        warnings: tuple[tuple[str, str], ...] = ()
        if payload.hidden_fraction > HIDDEN_WARNING:
            warnings = (
                (
                    "turned",
                    f"{round(100 * payload.hidden_fraction)} % of the face is turned away from the camera "
                    "and is filled in from its other side: a photo looking at the camera swaps better",
                ),
            )
        mesh = np.ascontiguousarray(xyz[:, :2])
        meshed = Face(bbox=m.mesh_bbox(mesh), score=picked.score, kps=m.five_points(mesh), mesh=mesh)
        return SourceFace(
            engine=NAME,
            face=meshed,
            faces_found=len(faces),
            thumbnail_jpeg=face_thumbnail(image, m.mesh_bbox(mesh)),
            payload=payload,
            warnings=warnings,
        )

    def open_stream(self) -> EmbeddedProcessor:
        return EmbeddedProcessor(self)


@dataclass(frozen=True, eq=False)
class _Keyframe:
    """The last full swap, for the frames after it: what it was made from and, per track id,
    how to measure that face's motion and its rendered face to move."""

    source: SourceFace
    options: SwapOptions
    shape: tuple[int, ...]
    meshes: dict[int, np.ndarray]
    anchors: dict[int, MotionAnchor]
    faces: dict[int, ReusableFace]


class EmbeddedProcessor:
    """One stream's state: its tracker (detector cadence, smoothing) and its last keyframe.
    Not thread-safe."""

    def __init__(self, engine: EmbeddedEngine, fps: float = 30.0) -> None:
        self.engine = engine
        self.tracker = FaceTracker(
            engine.stream_detector,
            engine.mesh_model,
            engine.detect_every,
            fps,
            detect_every_tracked=engine.detect_every_tracked,
            sure_detector=engine.sure_detector,
        )
        self._shape: tuple[int, ...] = ()
        self._keyframe: _Keyframe | None = None
        self._coords: np.ndarray | None = None  # reuse.frame_coords() of the frames, once needed
        self._since_keyframe = 0
        self.keyframes = 0  # full swaps kept for the frames after them (0 with swap_every 1)

    @property
    def detector_calls(self) -> int:
        return self.tracker.detector_calls

    @property
    def mesh_calls(self) -> int:
        return self.tracker.mesh_calls

    def _frame_coords(self, frame: np.ndarray) -> np.ndarray:
        if self._coords is None or self._coords.shape[:2] != frame.shape[:2]:
            self._coords = frame_coords(frame.shape)
        return self._coords

    def reset(self) -> None:
        self.tracker.reset()
        self._keyframe = None

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
        casting: Casting | None = None,
    ) -> SwapResult:
        start = time.perf_counter()
        frame = np.ascontiguousarray(frame)  # OpenCV needs it; a no-op for decoded video frames
        if frame.shape != self._shape:
            # WebRTC adapts resolution mid-stream; tracked ROIs are in the old frame's pixels.
            self.reset()
            self._shape = frame.shape
        reused = self._reuse(frame, source, options, timestamp_s, casting, start)
        if reused is not None:
            return reused
        self._keyframe = None
        track_all = options.many_faces or (casting is not None and casting.assigned)
        update = self.tracker.update(frame, track_all, timestamp_s)
        timings = {**update.timings_ms, "warp": 0.0, "color": 0.0, "blend": 0.0}
        faces, depths = _faces(update)
        strength = float(np.clip(options.strength, 0.0, 1.0))
        out, swapped = frame, 0
        unswapped: list[Face] = list(faces)
        if source is not None or casting is not None:
            # People are followed by their tracked position (no identity network runs here).
            choices = (
                casting.choose(faces, options.many_faces, None)
                if casting is not None
                else single_source(faces, source, options.many_faces)
            )
            targets = [
                (f, s) for f, s in zip(faces, choices, strict=True) if s is not None and f.mesh is not None
            ]
            unswapped = [f for f, s in zip(faces, choices, strict=True) if s is None or f.mesh is None]
            if strength <= 0:
                # Asked to keep the target's face: every target face is done, unchanged.
                swapped = len(targets)
            elif targets:
                out = frame.copy()
                layers: dict[int, tuple[FaceLayer, np.ndarray | None]] = {}
                for face, chosen in targets:
                    assert face.mesh is not None
                    rendered = render_bounded(
                        frame,
                        face.mesh,
                        depths.get(id(face)),
                        chosen.payload_for(NAME, SourceTexture),
                        options,
                        self.engine.max_cells,
                        timings,
                        self.engine.face_render_px,
                    )
                    if rendered is None:  # too small or off-frame: left as it was, so the caller must hide it
                        unswapped.append(face)
                        continue
                    swapped += 1
                    layers[_track(face)] = rendered
                kept = None
                # A session's casting with nothing assigned gives the default source to the faces
                # single_source would: its keyframes can be kept like those of a plain source.
                if source is not None and not _assigned(casting) and not unswapped:
                    kept = self._keep(frame, source, options, faces, layers)
                if kept is None:
                    for layer, to_frame in layers.values():
                        if to_frame is None:
                            composite_layer(out, layer, timings)
                        else:  # rendered smaller: scaled up as a kept keyframe is
                            t_blend = time.perf_counter()
                            scaled = reusable(layer, to_frame)
                            composite_moved(out, frame, scaled, None, self._frame_coords(frame))
                            timings["blend"] += (time.perf_counter() - t_blend) * 1000
                else:
                    # Blended the way the frames after it will be, so that a still face stays
                    # exactly still from keyframe to reused frame (within a grey level of
                    # composite_layer otherwise).
                    t_blend = time.perf_counter()
                    for kept_face in kept.faces.values():
                        composite_moved(out, frame, kept_face, None, self._frame_coords(frame))
                    timings["blend"] += (time.perf_counter() - t_blend) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        return SwapResult(
            frame=out, faces=faces, swapped=swapped, timings_ms=timings, unswapped=tuple(unswapped)
        )

    def _keep(
        self,
        frame: np.ndarray,
        source: SourceFace,
        options: SwapOptions,
        faces: tuple[Face, ...],
        layers: dict[int, tuple[FaceLayer, np.ndarray | None]],
    ) -> _Keyframe | None:
        """Keep this full swap for the next frames, when there are any to reuse it on and every
        face in it can be followed by its motion."""
        if self.engine.swap_every <= 1 or len(layers) != len(faces):
            return None
        meshes = {_track(f): f.mesh for f in faces if f.mesh is not None}
        anchors = {t: anchor(frame, mesh) for t, mesh in meshes.items()}
        kept = {t: a for t, a in anchors.items() if a is not None}
        if len(kept) != len(faces):
            return None
        rendered = {t: reusable(layer, to_frame) for t, (layer, to_frame) in layers.items()}
        self._keyframe = _Keyframe(source, options, frame.shape, meshes, kept, rendered)
        self._since_keyframe = 0
        self.keyframes += 1
        return self._keyframe

    def _reuse(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None,
        casting: Casting | None,
        start: float,
    ) -> SwapResult | None:
        """This frame made by moving the last keyframe's faces, or None when it must be a keyframe:
        the cadence is up (``swap_every`` frames, or ``swap_every_still`` while every face holds
        still), anything it was made from changed, the detector is due, or a face's motion is
        unsure or too large."""
        key = self._keyframe
        if (
            key is None
            or self._since_keyframe >= self.engine.swap_every_still - 1
            or _assigned(casting)
            or source is not key.source
            or options != key.options
            or frame.shape != key.shape
            or self.tracker.due(options.many_faces)
            or {t.id for t in self.tracker.tracks} != set(key.faces)
        ):
            return None
        t0 = time.perf_counter()
        motions = {}
        # Past the fixed cadence, a keyframe is reused only while no face's expression changed.
        still_only = self._since_keyframe >= self.engine.swap_every - 1
        for track_id, start_at in key.anchors.items():
            motion = estimate(start_at, frame)
            if motion is None or (still_only and motion.change > STILL_CHANGE):
                return None
            motions[track_id] = motion.transform
        t_motion = time.perf_counter()
        update = self.tracker.follow(
            {t: move_points(key.meshes[t], motion) for t, motion in motions.items()}, timestamp_s
        )
        faces, _ = _faces(update)
        out = frame.copy()
        for face in faces:
            if not composite_moved(
                out,
                frame,
                key.faces[_track(face)],
                motions[_track(face)],
                self._frame_coords(frame),
            ):
                return None
        self._since_keyframe += 1
        timings = {
            **update.timings_ms,
            "motion": (t_motion - t0) * 1000,
            "warp": 0.0,
            "color": 0.0,
            "blend": (time.perf_counter() - t_motion) * 1000,
            "total": (time.perf_counter() - start) * 1000,
        }
        return SwapResult(frame=out, faces=faces, swapped=len(faces), timings_ms=timings, unswapped=())


def _assigned(casting: Casting | None) -> bool:
    """Whether ``casting`` maps people to sources (every live session passes its casting, with
    nothing assigned until the page maps someone)."""
    return casting is not None and casting.assigned


def _track(face: Face) -> int:
    assert face.track is not None  # faces with a mesh come from tracks
    return face.track


def _faces(update: TrackUpdate) -> tuple[tuple[Face, ...], dict[int, np.ndarray | None]]:
    """The faces of a tracker update (mesh-tracked first, then those only the detector found),
    and the depth of each tracked one by ``id(face)``."""
    tracked = tuple(
        Face(
            bbox=m.mesh_bbox(t.mesh),
            score=t.score,
            kps=m.five_points(t.mesh),
            mesh=t.mesh,
            track=t.track_id,
        )
        for t in update.faces
    )
    depths = {id(f): t.depth for f, t in zip(tracked, update.faces, strict=True)}
    # Faces the detector found but no mesh follows are still faces in the picture: report them.
    return tracked + tuple(update.untracked), depths
