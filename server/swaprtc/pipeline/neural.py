"""The neural engine: detector → ArcFace → InSwapper → (GFPGAN) → crop-region paste-back.

Models are loaded once (``NeuralEngine.from_store``) and shared by every stream. Each stream gets a
``NeuralStream`` from ``open_stream``; it holds no model state, only its own timing scratch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from swaprtc.engine import Casting, single_source
from swaprtc.errors import NoFaceError
from swaprtc.faces import check_frame, face_thumbnail
from swaprtc.inference.runner import ModelRunner, describe_runner, runner_providers
from swaprtc.pipeline.aligner import estimate_arcface, estimate_ffhq, transform_points, warp_crop
from swaprtc.pipeline.color import match_color
from swaprtc.pipeline.detector import Detector, RetinaFaceDetector, ScrfdDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.enhance_cadence import EnhanceCadence, mix
from swaprtc.pipeline.enhancer import GfpganEnhancer
from swaprtc.pipeline.mouth_mask import mouth_mask, restore_region
from swaprtc.pipeline.paste import paste_into
from swaprtc.pipeline.swapper import InSwapper, blend_latents
from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

if TYPE_CHECKING:
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


class NeuralEngine:
    name = ENGINE_NAME

    def __init__(
        self,
        detector: Detector,
        embedder: ArcFaceEmbedder,
        swapper: InSwapper,
        enhancer: GfpganEnhancer | None = None,
        models: dict[str, object] | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.swapper = swapper
        self.enhancer = enhancer
        self._models = models or {}

    @classmethod
    def from_runners(cls, runners: NeuralRunners) -> NeuralEngine:
        """The engine over already loaded runners (local sessions, a remote server, ...)."""
        if runners.detector_kind == "scrfd":
            detector: Detector = ScrfdDetector(runners.detector)
        else:
            detector = RetinaFaceDetector(runners.detector)
        enhancer = GfpganEnhancer(runners.enhancer) if runners.enhancer is not None else None
        models: dict[str, object] = {**runners.models, **runners.decisions}
        return cls(
            detector,
            ArcFaceEmbedder(runners.embedder),
            InSwapper(runners.swapper, runners.emap),
            enhancer,
            models,
        )

    @classmethod
    def from_store(cls, store: ModelStore, settings: Settings) -> NeuralEngine:
        """Load every model of the engine once. Raises ModelError when a required one is missing."""
        from swaprtc.inference.loader import local_neural_runners

        return cls.from_runners(local_neural_runners(store, settings))

    def describe(self) -> dict[str, object]:
        runners: dict[str, ModelRunner | None] = {
            "detector": getattr(self.detector, "runner", None),
            "embedder": self.embedder.runner,
            "swapper": self.swapper.runner,
            "enhancer": self.enhancer.runner if self.enhancer else None,
        }
        return {
            "engine": self.name,
            "models": dict(self._models),
            "providers": {k: runner_providers(r) for k, r in runners.items() if r is not None},
            "runners": {k: describe_runner(r) for k, r in runners.items() if r is not None},
            "enhancer": self.enhancer is not None,
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

    def open_stream(self) -> NeuralStream:
        return NeuralStream(self)


def _identity(source: SourceFace) -> NeuralIdentity:
    if source.engine != ENGINE_NAME or not isinstance(source.payload, NeuralIdentity):
        raise ValueError(f"source face was prepared by the {source.engine!r} engine, not {ENGINE_NAME!r}")
    return source.payload


class NeuralStream:
    """Per-stream processor. Detection runs on every frame (the neural stages dominate anyway)."""

    def __init__(self, engine: NeuralEngine) -> None:
        self.engine = engine
        self.cadence = EnhanceCadence()  # enhance every Nth frame, reusing the last restored face

    def reset(self) -> None:
        """Faces are not tracked between frames; only the reused enhanced faces are forgotten."""
        self.cadence.reset()

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
        casting: Casting | None = None,
    ) -> SwapResult:
        """``timestamp_s`` is accepted for the FrameProcessor contract; nothing here depends on time."""
        t_start = time.perf_counter()
        if source is None and casting is None:
            return SwapResult(frame=frame, faces=(), swapped=0, timings_ms={"total": 0.0})
        eng = self.engine
        timings = {"detect": 0.0, "align": 0.0, "swap": 0.0, "enhance": 0.0, "paste": 0.0}

        t = time.perf_counter()
        faces = eng.detector.detect(frame)
        timings["detect"] = (time.perf_counter() - t) * 1000
        if casting is not None:
            # People are followed by identity, so a mapping survives someone leaving and returning.
            choices = casting.choose(faces, options.many_faces, lambda f: eng.embedder.embed(frame, f.kps))
        else:
            choices = single_source(faces, source, options.many_faces)
        chosen = [(f, s) for f, s in zip(faces, choices, strict=True) if s is not None]
        # Faces left alone (one-face mode, unmapped) still show a real person: the caller hides them.
        unswapped: list[Face] = [f for f, s in zip(faces, choices, strict=True) if s is None]
        if not chosen:
            timings["total"] = (time.perf_counter() - t_start) * 1000
            return SwapResult(
                frame=frame, faces=tuple(faces), swapped=0, timings_ms=timings, unswapped=tuple(unswapped)
            )

        out = frame.copy()
        size = eng.swapper.size
        done: list[Face] = []
        for face, chosen_source in chosen:
            identity = _identity(chosen_source)
            t = time.perf_counter()
            m = estimate_arcface(face.kps, size)
            crop = warp_crop(frame, m, size)
            timings["align"] += (time.perf_counter() - t) * 1000

            t = time.perf_counter()
            latent = identity.latent
            if options.strength < 1.0:
                target_latent = eng.swapper.latent(eng.embedder.embed(frame, face.kps))
                latent = blend_latents(identity.latent, target_latent, options.strength)
            swapped = eng.swapper.swap(crop, latent)
            timings["swap"] += (time.perf_counter() - t) * 1000
            if options.color_correction:
                t = time.perf_counter()
                swapped = match_color(swapped, crop)
                timings["adjust"] = timings.get("adjust", 0.0) + (time.perf_counter() - t) * 1000

            t = time.perf_counter()
            region = paste_into(out, swapped, m)
            timings["paste"] += (time.perf_counter() - t) * 1000
            if options.mouth_mask and region is not None:
                t = time.perf_counter()
                keep_target_mouth(out, frame, m, face.kps, swapped.shape[0], options)
                timings["adjust"] = timings.get("adjust", 0.0) + (time.perf_counter() - t) * 1000
            # No region: the aligned crop maps entirely outside the frame, so nothing was replaced.
            (done if region is not None else unswapped).append(face)

        if options.enhance and eng.enhancer is not None and done:
            t = time.perf_counter()
            self._enhance(eng.enhancer, out, done, options)
            timings["enhance"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - t_start) * 1000
        return SwapResult(
            frame=out, faces=tuple(faces), swapped=len(done), timings_ms=timings, unswapped=tuple(unswapped)
        )

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
    mask = mouth_mask(
        transform_points(m, kps[3:5]), size, options.mouth_mask_padding, options.mouth_mask_blur
    )
    restore_region(out, frame, mask, m)
