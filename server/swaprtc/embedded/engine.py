"""The embedded engine: a real face swap from two small permissively licensed models, live on a CPU.

RetinaFace-MNet0.25 finds faces, MediaPipe's face mesh gives 468 landmarks, and the source face's
texture is warped onto the target mesh triangle by triangle, colour-matched to the target's skin
and lighting, and blended in with a feathered mask that leaves the target's eyes and mouth interior
alone. No identity network runs: it is a texture swap, so it needs no GPU and no large download.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import onnxruntime as ort

from swaprtc.embedded import mesh as m
from swaprtc.embedded.blend import composite, face_masks, lighting_gain
from swaprtc.embedded.landmarks import FaceMeshModel, roi_from_detection, roi_from_mesh
from swaprtc.embedded.tracker import PRESENCE_THRESHOLD, FaceTracker
from swaprtc.embedded.warp import face_grid, warp_texture
from swaprtc.engine import Casting, single_source
from swaprtc.errors import ModelError, NoFaceError
from swaprtc.faces import check_frame, face_thumbnail
from swaprtc.inference.runner import runner_providers
from swaprtc.inference.sessions import RuntimeOptions, create_session
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

NAME = "embedded"
CONTROLS = ("many_faces", "strength")  # live settings (SwapOptions keys) this engine acts on
DETECTOR_MODEL = "retinaface_mnet025"
LANDMARK_MODEL = "face_landmark"
# SHA-256 of the ONNX file convert_face_landmark() makes from the pinned face_landmark.tflite.
CONVERTED_LANDMARK_SHA256 = "08e3d7445ee97f1969766762a62baf6d3899c6e5c64974f1240d5ec84a9dbd74"
TEXTURE_SIZE = 256  # long side of the source face texture (px)
LIGHT_CELLS = 32  # resolution of the lighting estimate across the face box
LIGHT_SIGMA = 0.12  # lighting blur, in face widths: shading follows the target, features do not


@dataclass(frozen=True, eq=False)
class SourceTexture:
    """The embedded engine's SourceFace payload: computed once per upload, memory only."""

    texture: np.ndarray  # (h, w, 3) BGR uint8 crop around the source face
    mesh: np.ndarray  # (468, 2) float32 source mesh in texture pixels
    triangles: np.ndarray  # (K, 3) int32 fixed topology over the mesh, reused for every frame


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
    ) -> None:
        self.detect_every = detect_every
        self.threads = threads
        self.max_cells = max_cells
        # Uploaded photos can be large with small faces: detect at full size there; in a live
        # stream a 320 input is enough for webcam faces and four times cheaper.
        self.source_detector = RetinaFaceDetector(detector_session, input_size=640)
        self.stream_detector = RetinaFaceDetector(detector_session, input_size=track_detect_size)
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
            "method": "mesh texture warp (piecewise affine), colour and lighting matched, feathered blend",
            "enhancer": False,  # the embedded engine has no enhancer: SwapOptions.enhance is ignored
            "controls": list(CONTROLS),
        }

    def detect(self, frame: np.ndarray) -> list[Face]:
        return self.source_detector.detect(frame)

    def source_mesh(self, image: np.ndarray, face: Face) -> tuple[np.ndarray, float]:
        """A still photo's mesh: detector ROI, then twice refined on the mesh's own ROI."""
        mesh, score = self.mesh_model.run(image, roi_from_detection(face.bbox, face.kps))
        for _ in range(2):
            mesh, score = self.mesh_model.run(image, roi_from_mesh(mesh))
        return mesh, score

    def prepare_source(self, image: np.ndarray, face: Face | None = None) -> SourceFace:
        image = check_frame(image)
        faces = self.detect(image)
        if not faces:
            raise NoFaceError("no face found in the source image")
        picked = face if face is not None else faces[0]
        mesh, score = self.source_mesh(image, picked)
        if score < PRESENCE_THRESHOLD:
            raise NoFaceError("the face in the source image is not clear enough to map")
        texture, tex_mesh = _texture(image, mesh)
        payload = SourceTexture(texture=texture, mesh=tex_mesh, triangles=m.triangulate(tex_mesh))
        meshed = Face(bbox=m.mesh_bbox(mesh), score=picked.score, kps=m.five_points(mesh), mesh=mesh)
        return SourceFace(
            engine=NAME,
            face=meshed,
            faces_found=len(faces),
            thumbnail_jpeg=face_thumbnail(image, m.mesh_bbox(mesh)),
            payload=payload,
        )

    def open_stream(self) -> EmbeddedProcessor:
        return EmbeddedProcessor(self)


def _crop_box(mesh: np.ndarray, shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = m.mesh_bbox(mesh)
    pad = margin * max(x2 - x1, y2 - y1)
    h, w = shape[:2]
    return (
        max(int(x1 - pad), 0),
        max(int(y1 - pad), 0),
        min(int(np.ceil(x2 + pad)) + 1, w),
        min(int(np.ceil(y2 + pad)) + 1, h),
    )


def _texture(image: np.ndarray, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face crop at a bounded resolution, and the mesh in its pixels."""
    x0, y0, x1, y1 = _crop_box(mesh, image.shape, 0.05)
    crop = image[y0:y1, x0:x1]
    scale = min(1.0, TEXTURE_SIZE / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        scale_xy = np.array([size[0] / (x1 - x0), size[1] / (y1 - y0)], dtype=np.float32)
    else:
        scale_xy = np.ones(2, dtype=np.float32)
    # Pixel-index coordinates scale about pixel centres.
    tex_mesh = (mesh - np.array([x0, y0], np.float32) + 0.5) * scale_xy - 0.5
    return np.ascontiguousarray(crop), tex_mesh.astype(np.float32)


def swap_face(
    frame: np.ndarray,
    out: np.ndarray,
    mesh: np.ndarray,
    source: SourceTexture,
    strength: float,
    max_cells: int,
    timings: dict[str, float],
) -> bool:
    """Warp, colour-match and blend the source onto one target mesh, writing into ``out``.

    Only ``out``'s face box is written. Returns False when the face is too small or off-frame.
    """
    start = time.perf_counter()
    grid = face_grid(mesh[m.FACE_OVAL], frame.shape, max_cells)
    if grid is None:
        return False
    warped = warp_texture(source.texture, source.mesh, mesh, source.triangles, grid)
    t_warp = time.perf_counter()

    target_box = frame[grid.y0 : grid.y1, grid.x0 : grid.x1]
    grid_mesh = grid.to_grid(mesh)
    rows, cols = grid.shape
    face_cells = float(max(np.ptp(grid_mesh[m.FACE_OVAL], axis=0)))
    blend_c, skin_c = face_masks(grid_mesh, (rows, cols), feather=max(1.0, 0.06 * face_cells))
    # Lighting is low-frequency: estimate it on a ~LIGHT_CELLS-wide thumbnail of the face box.
    width, height = grid.size
    k = max(width, height) / LIGHT_CELLS
    small = (max(2, round(width / k)), max(2, round(height / k)))
    gain_small = lighting_gain(
        cv2.resize(target_box, small, interpolation=cv2.INTER_AREA),
        cv2.resize(warped, small, interpolation=cv2.INTER_AREA),
        cv2.resize(skin_c, small, interpolation=cv2.INTER_AREA),
        LIGHT_SIGMA * face_cells * grid.step / k,
    )
    gain = cv2.resize(gain_small, grid.size, interpolation=cv2.INTER_LINEAR)
    t_color = time.perf_counter()

    alpha = grid.upsample(blend_c * np.float32(strength))
    out[grid.y0 : grid.y1, grid.x0 : grid.x1] = composite(target_box, warped, gain, alpha)
    t_blend = time.perf_counter()
    timings["warp"] += (t_warp - start) * 1000
    timings["color"] += (t_color - t_warp) * 1000
    timings["blend"] += (t_blend - t_color) * 1000
    return True


def _texture_of(source: SourceFace) -> SourceTexture:
    if source.engine != NAME or not isinstance(source.payload, SourceTexture):
        raise ValueError(f"source face was prepared by the {source.engine!r} engine, not {NAME!r}")
    return source.payload


class EmbeddedProcessor:
    """One stream's state: its tracker (detector cadence, smoothing). Not thread-safe."""

    def __init__(self, engine: EmbeddedEngine, fps: float = 30.0) -> None:
        self.engine = engine
        self.tracker = FaceTracker(engine.stream_detector, engine.mesh_model, engine.detect_every, fps)
        self._shape: tuple[int, ...] = ()

    @property
    def detector_calls(self) -> int:
        return self.tracker.detector_calls

    def reset(self) -> None:
        self.tracker.reset()

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
            self.tracker.reset()
            self._shape = frame.shape
        track_all = options.many_faces or (casting is not None and casting.assigned)
        update = self.tracker.update(frame, track_all, timestamp_s)
        timings = {**update.timings_ms, "warp": 0.0, "color": 0.0, "blend": 0.0}
        tracked = tuple(
            Face(bbox=m.mesh_bbox(t.mesh), score=t.score, kps=m.five_points(t.mesh), mesh=t.mesh)
            for t in update.faces
        )
        # Faces the detector found but no mesh follows are still faces in the picture: report them.
        faces = tracked + tuple(update.untracked)
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
                for face, chosen in targets:
                    assert face.mesh is not None
                    if swap_face(
                        frame, out, face.mesh, _texture_of(chosen), strength, self.engine.max_cells, timings
                    ):
                        swapped += 1
                    else:  # too small or off-frame: left as it was, so the caller must hide it
                        unswapped.append(face)
        timings["total"] = (time.perf_counter() - start) * 1000
        return SwapResult(
            frame=out, faces=faces, swapped=swapped, timings_ms=timings, unswapped=tuple(unswapped)
        )
