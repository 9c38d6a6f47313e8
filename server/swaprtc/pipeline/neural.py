"""The neural engine: detector → ArcFace → InSwapper → (GFPGAN) → crop-region paste-back.

Models are loaded once (``NeuralEngine.from_store``) and shared by every stream. Each stream gets a
``NeuralStream`` from ``open_stream``: it follows faces between detector runs with the face mesh
(``Tracking``) and, when a batch scheduler is set up, sends its model calls through its own queue
of the shared schedulers (``Batching``), so faces from all streams share batched calls fairly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from swaprtc.embedded.mesh import five_points, mesh_bbox
from swaprtc.embedded.tracker import FaceTracker
from swaprtc.engine import Casting, single_source
from swaprtc.errors import NoFaceError
from swaprtc.faces import check_frame, face_thumbnail
from swaprtc.inference.runner import ModelRunner, describe_runner, runner_providers
from swaprtc.inference.scheduler import BatchScheduler, InferenceTimeout
from swaprtc.pipeline.aligner import estimate_arcface, estimate_ffhq, transform_points, warp_crop
from swaprtc.pipeline.color import match_color
from swaprtc.pipeline.detector import Detector, RetinaFaceDetector, ScrfdDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.enhance_cadence import EnhanceCadence, mix
from swaprtc.pipeline.enhancer import GfpganEnhancer
from swaprtc.pipeline.keypoints import carry_points
from swaprtc.pipeline.mouth_mask import mouth_mask, restore_region
from swaprtc.pipeline.paste import paste_into
from swaprtc.pipeline.swapper import InSwapper, blend_latents
from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

if TYPE_CHECKING:
    from swaprtc.embedded.landmarks import FaceMeshModel
    from swaprtc.embedded.tracker import TrackUpdate
    from swaprtc.inference.loader import NeuralRunners
    from swaprtc.models.store import ModelStore
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

ENGINE_NAME = "neural"
# Live settings (SwapOptions keys) this engine acts on; the enhancer's only when it is loaded.
CONTROLS = (
    "many_faces",
    "strength",
    "mouth_mask",
    "mouth_mask_blur",
    "mouth_mask_padding",
    "color_correction",
)
ENHANCER_CONTROLS = ("enhance", "enhance_blend", "enhance_every")


@dataclass(frozen=True, eq=False)
class NeuralIdentity:
    """What the neural engine keeps for an uploaded face: its embedding and its swap latent."""

    embedding: np.ndarray  # (512,) L2-normalised ArcFace embedding
    latent: np.ndarray  # (1, 512) (embedding @ emap) / norm, ready for InSwapper


@dataclass(frozen=True)
class Tracking:
    """Follow faces with the face mesh between detector runs (every ``detect_every`` frames)."""

    mesh_model: FaceMeshModel
    detect_every: int = 5


@dataclass(frozen=True)
class Batching:
    """Shared schedulers (one per model in the process) and how long a stream waits for one."""

    schedulers: dict[str, BatchScheduler] = field(default_factory=dict)  # "embedder"|"swapper"|"enhancer"
    timeout_s: float | None = None  # the swap deadline: a later result is of no use

    def close(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.close()


@dataclass(frozen=True)
class Stages:
    """The model stages one stream calls: the engine's own, or views onto the shared schedulers."""

    embedder: ArcFaceEmbedder
    swapper: InSwapper
    enhancer: GfpganEnhancer | None


class NeuralEngine:
    name = ENGINE_NAME

    def __init__(
        self,
        detector: Detector,
        embedder: ArcFaceEmbedder,
        swapper: InSwapper,
        enhancer: GfpganEnhancer | None = None,
        models: dict[str, object] | None = None,
        *,
        tracking: Tracking | None = None,
        batching: Batching | None = None,
        decisions: dict[str, object] | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.swapper = swapper
        self.enhancer = enhancer
        self.tracking = tracking
        self.batching = batching
        self._models = models or {}
        self.decisions = decisions or {}  # what loading chose (fp16, batch axes, GPU settings)

    @classmethod
    def from_runners(
        cls, runners: NeuralRunners, *, tracking: Tracking | None = None, batching: Batching | None = None
    ) -> NeuralEngine:
        """The engine over already loaded runners (local sessions, a remote server, ...)."""
        if runners.detector_kind == "scrfd":
            detector: Detector = ScrfdDetector(runners.detector)
        else:
            detector = RetinaFaceDetector(runners.detector)
        enhancer = GfpganEnhancer(runners.enhancer) if runners.enhancer is not None else None
        embedder = ArcFaceEmbedder(runners.embedder)
        swapper = InSwapper(runners.swapper, runners.emap)
        return cls(
            detector,
            embedder,
            swapper,
            enhancer,
            dict(runners.models),
            tracking=tracking,
            batching=batching,
            decisions=dict(runners.decisions),
        )

    @classmethod
    def from_store(cls, store: ModelStore, settings: Settings) -> NeuralEngine:
        """Load every model of the engine once. Raises ModelError when a required one is missing."""
        from swaprtc.inference.loader import local_neural_runners, neural_batching, neural_tracking

        runners = local_neural_runners(store, settings)
        return cls.from_runners(
            runners,
            tracking=neural_tracking(store, settings),
            batching=neural_batching(runners, settings),
        )

    def describe(self) -> dict[str, object]:
        runners: dict[str, ModelRunner | None] = {
            "detector": getattr(self.detector, "runner", None),
            "embedder": self.embedder.runner,
            "swapper": self.swapper.runner,
            "enhancer": self.enhancer.runner if self.enhancer else None,
        }
        for stage, scheduler in (self.batching.schedulers if self.batching else {}).items():
            runners[stage] = scheduler
        return {
            "engine": self.name,
            "models": dict(self._models),
            "providers": {k: runner_providers(r) for k, r in runners.items() if r is not None},
            "runners": {k: describe_runner(r) for k, r in runners.items() if r is not None},
            "enhancer": self.enhancer is not None,
            "detect_every": self.tracking.detect_every if self.tracking else 1,
            "batching": self.batching is not None and bool(self.batching.schedulers),
            "gpu": dict(self.decisions),
            "controls": list(CONTROLS + (ENHANCER_CONTROLS if self.enhancer is not None else ())),
        }

    def detect(self, frame: np.ndarray) -> list[Face]:
        return self.detector.detect(check_frame(frame))

    def prepare_source(self, image: np.ndarray, face: Face | None = None) -> SourceFace:
        image = check_frame(image)
        faces = self.detector.detect(image)
        if not faces:
            raise NoFaceError(
                "no face found in the source photo: use a clear, well-lit, front-facing photo of one face"
            )
        face = face if face is not None else faces[0]  # detectors return the largest first
        embedding = self.embedder.embed(image, face.kps)
        identity = NeuralIdentity(embedding=embedding, latent=self.swapper.latent(embedding))
        return SourceFace(
            engine=self.name,
            face=face,
            faces_found=len(faces),
            thumbnail_jpeg=face_thumbnail(image, face.bbox),
            payload=identity,
        )

    def stages_for(self, key: object) -> Stages:
        """The stages a stream calls: through the shared schedulers under its own ``key``."""
        batching = self.batching
        if batching is None or not batching.schedulers:
            return Stages(self.embedder, self.swapper, self.enhancer)

        def via(stage: str, runner: ModelRunner) -> ModelRunner:
            scheduler = batching.schedulers.get(stage)
            return scheduler.client(key, batching.timeout_s) if scheduler is not None else runner

        enhancer = self.enhancer
        return Stages(
            ArcFaceEmbedder(via("embedder", self.embedder.runner)),
            InSwapper(via("swapper", self.swapper.runner), self.swapper.emap),
            GfpganEnhancer(via("enhancer", enhancer.runner)) if enhancer is not None else None,
        )

    def open_stream(self) -> NeuralStream:
        return NeuralStream(self)


class NeuralStream:
    """Per-stream processor: where the faces are (detector, or tracked mesh between detector
    runs), then align → swap → paste → enhance. Not thread-safe: one stream, one user."""

    def __init__(self, engine: NeuralEngine) -> None:
        self.engine = engine
        self.stages = engine.stages_for(self)
        self.tracker: FaceTracker | None = None
        if engine.tracking is not None and engine.tracking.detect_every > 1:
            self.tracker = FaceTracker(
                engine.detector, engine.tracking.mesh_model, engine.tracking.detect_every, smoothing=False
            )
        # track id -> (detector points, mesh) of the last frame the detector saw that face
        self._anchors: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cadence = EnhanceCadence()  # enhance every Nth frame, reusing the last restored face

    def reset(self) -> None:
        """Forget tracked faces: the next frame runs the detector."""
        if self.tracker is not None:
            self.tracker.reset()
        self._anchors.clear()
        self.cadence.reset()

    def locate(
        self, frame: np.ndarray, follow_all: bool, timestamp_s: float | None, timings: dict[str, float]
    ) -> list[Face]:
        """The faces in this frame, largest first: the detector's, or on frames between its runs
        the tracked ones. ``follow_all`` = track every face, not only the largest."""
        t = time.perf_counter()
        if self.tracker is None:
            faces = self.engine.detector.detect(frame)
            timings["detect"] = (time.perf_counter() - t) * 1000
            return faces
        update = self.tracker.update(frame, follow_all, timestamp_s)
        timings["detect"] = update.timings_ms["detect"]
        timings["track"] = update.timings_ms["landmarks"]
        # Found by the detector but not followed by the mesh (a profile, a covered face): its
        # detector points are good for this frame, and the tracker looks again next frame.
        faces = self.tracked_faces(update) + list(update.untracked)
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def tracked_faces(self, update: TrackUpdate) -> list[Face]:
        """Faces with five points: the detector's where it ran, else carried by the mesh."""
        faces: list[Face] = []
        for tf in update.faces:
            if tf.detection is not None:
                self._anchors[tf.track_id] = (tf.detection.kps, tf.mesh)
                kps = tf.detection.kps
            elif tf.track_id in self._anchors:
                points, mesh_then = self._anchors[tf.track_id]
                kps = carry_points(points, mesh_then, tf.mesh)
            else:  # not seen by the detector yet (kept by its mesh alone): the mesh's own points
                kps = five_points(tf.mesh)
            faces.append(
                Face(bbox=mesh_bbox(tf.mesh), score=tf.score, kps=kps, mesh=tf.mesh, track=tf.track_id)
            )
        alive = {tf.track_id for tf in update.faces}
        for gone in set(self._anchors) - alive:
            del self._anchors[gone]
        return faces

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
        casting: Casting | None = None,
    ) -> SwapResult:
        """``timestamp_s`` is accepted for the FrameProcessor contract (the tracker's clock)."""
        t_start = time.perf_counter()
        if source is None and casting is None:
            return SwapResult(frame=frame, faces=(), swapped=0, timings_ms={"total": 0.0})
        stages = self.stages
        timings = {"detect": 0.0, "align": 0.0, "swap": 0.0, "enhance": 0.0, "paste": 0.0}
        # With people mapped to sources, every face is followed, not only the largest.
        follow_all = options.many_faces or (casting is not None and casting.assigned)
        faces = self.locate(frame, follow_all, timestamp_s, timings)
        choices: list[SourceFace | None] = [None] * len(faces)
        if casting is not None:
            # People are followed by identity, so a mapping survives someone leaving and returning.
            try:
                choices = casting.choose(
                    faces, options.many_faces, lambda f: stages.embedder.embed(frame, f.kps)
                )
            except InferenceTimeout:  # no identity in time: no face can be given its source
                log.debug("embedding for casting past the deadline: faces hidden this frame")
        else:
            choices = single_source(faces, source, options.many_faces)
        chosen = [(f, s) for f, s in zip(faces, choices, strict=True) if s is not None]
        # Faces left alone (one-face mode, unmapped) still show a real person: the caller hides them.
        unswapped: list[Face] = [f for f, s in zip(faces, choices, strict=True) if s is None]

        def result(out: np.ndarray, done: list[Face]) -> SwapResult:
            timings["total"] = (time.perf_counter() - t_start) * 1000
            return SwapResult(
                frame=out,
                faces=tuple(faces),
                swapped=len(done),
                timings_ms=timings,
                unswapped=tuple(unswapped),
            )

        if not chosen:
            return result(frame, [])

        t = time.perf_counter()
        size = stages.swapper.size
        matrices = [estimate_arcface(face.kps, size) for face, _ in chosen]
        crops = [warp_crop(frame, m, size) for m in matrices]
        timings["align"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        latents = [s.payload_for(ENGINE_NAME, NeuralIdentity).latent for _, s in chosen]
        try:
            if options.strength < 1.0:
                targets = stages.embedder.embed_crops([stages.embedder.crop(frame, f.kps) for f, _ in chosen])
                latents = [
                    blend_latents(latent, stages.swapper.latent(e), options.strength)
                    for latent, e in zip(latents, targets, strict=True)
                ]
            # One call for every face of the frame (or one queued request under batching).
            swapped = stages.swapper.swap_many(crops, latents)
        except InferenceTimeout:
            # The deadline passed in the model queue: nothing was swapped, every face is hidden.
            unswapped = [*(f for f, _ in chosen), *unswapped]
            timings["swap"] = (time.perf_counter() - t) * 1000
            return result(frame, [])
        timings["swap"] = (time.perf_counter() - t) * 1000
        if options.color_correction:
            t = time.perf_counter()
            swapped = [match_color(s, c) for s, c in zip(swapped, crops, strict=True)]
            timings["adjust"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        out = frame.copy()
        done: list[Face] = []
        for (face, _), crop, m in zip(chosen, swapped, matrices, strict=True):
            # No region: the aligned crop maps entirely outside the frame, so nothing was replaced.
            if paste_into(out, crop, m) is None:
                unswapped.append(face)
                continue
            done.append(face)
            if options.mouth_mask:
                keep_target_mouth(out, frame, m, face.kps, size, options)
        timings["paste"] = (time.perf_counter() - t) * 1000

        if options.enhance and stages.enhancer is not None and done:
            t = time.perf_counter()
            try:
                self._enhance(stages.enhancer, out, done, options)
            except InferenceTimeout:
                log.debug("enhancer past the deadline: frame sent swapped but not enhanced")
            timings["enhance"] = (time.perf_counter() - t) * 1000
        return result(out, done)

    def _enhance(
        self, enhancer: GfpganEnhancer, out: np.ndarray, faces: list[Face], options: SwapOptions
    ) -> None:
        """Restore the swapped faces in place; on frames between every Nth, paste the last restored
        face again (at the face's current alignment) instead of running the enhancer."""
        run_now = self.cadence.tick(options.enhance_every)
        aligned = [estimate_ffhq(face.kps, enhancer.size) for face in faces]
        crops = [warp_crop(out, m, enhancer.size) for m in aligned]
        restored = [self.cadence.reuse(slot, run_now) for slot in range(len(faces))]
        missing = [slot for slot, r in enumerate(restored) if r is None]
        fresh_crops = enhancer.restore_many([crops[s] for s in missing]) if missing else []
        for slot, fresh in zip(missing, fresh_crops, strict=True):
            restored[slot] = fresh
            self.cadence.remember(slot, fresh, len(faces))
        for m, crop, face_restored in zip(aligned, crops, restored, strict=True):
            assert face_restored is not None
            paste_into(out, mix(face_restored, crop, options.enhance_blend), m)


def keep_target_mouth(
    out: np.ndarray, frame: np.ndarray, m: np.ndarray, kps: np.ndarray, size: int, options: SwapOptions
) -> None:
    """Put the target's own mouth interior (from ``frame``) back into ``out``, in place: the mask is
    drawn in the aligned crop, so it follows the mouth's angle, and applied in frame pixels, so
    the mouth comes back exactly as the camera saw it."""
    corners = transform_points(m, kps[3:5])
    mask = mouth_mask(corners, size, options.mouth_mask_padding, options.mouth_mask_blur)
    restore_region(out, frame, mask, m)
