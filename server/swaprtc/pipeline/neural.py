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
from swaprtc.pipeline.aligner import estimate_arcface, warp_crop
from swaprtc.pipeline.detector import Detector, RetinaFaceDetector, ScrfdDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.enhancer import GfpganEnhancer
from swaprtc.pipeline.onnx_io import GPU_PROVIDERS
from swaprtc.pipeline.paste import paste_into
from swaprtc.pipeline.swapper import InSwapper, blend_latents, load_emap
from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

if TYPE_CHECKING:
    from swaprtc.models.store import ModelStore
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

ENGINE_NAME = "neural"


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
    def from_store(cls, store: ModelStore, settings: Settings) -> NeuralEngine:
        """Load every model of the engine once. Raises ModelError when a required one is missing."""
        models: dict[str, object] = {}
        if settings.detector == "scrfd":
            detector: Detector = ScrfdDetector(store.session("det_10g"))
            det_name = "det_10g"
        else:
            detector = RetinaFaceDetector(store.session("retinaface_mnet025"))
            det_name = "retinaface_mnet025"
        swap_name = "inswapper_128"
        # fp16 halves memory and is faster on GPUs; on CPU it is slower, so only use it there.
        on_gpu = any(p in GPU_PROVIDERS for p in store.planned_providers())
        if on_gpu and store.available("inswapper_128_fp16"):
            swap_name = "inswapper_128_fp16"
        swap_session = store.session(swap_name)
        swapper = InSwapper(swap_session, load_emap(store.path(swap_name)))
        embedder = ArcFaceEmbedder(store.session("w600k_r50"))
        enhancer = None
        if store.available("gfpgan_1.4"):
            enhancer = GfpganEnhancer(store.session("gfpgan_1.4"))
        else:
            log.info("gfpgan_1.4 not present: the face enhancer is off (swaprtc models download gfpgan_1.4)")
        for name in (det_name, "w600k_r50", swap_name, *(["gfpgan_1.4"] if enhancer else [])):
            models[name] = store.providers_in_use(name)
        return cls(detector, embedder, swapper, enhancer, models)

    def describe(self) -> dict[str, object]:
        sessions = {
            "detector": getattr(self.detector, "session", None),
            "embedder": self.embedder.session,
            "swapper": self.swapper.session,
            "enhancer": self.enhancer.session if self.enhancer else None,
        }
        providers = {k: list(s.get_providers()) for k, s in sessions.items() if s is not None}
        return {
            "engine": self.name,
            "models": dict(self._models),
            "providers": providers,
            "enhancer": self.enhancer is not None,
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

    def reset(self) -> None:
        """Nothing is tracked between frames."""

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

            t = time.perf_counter()
            region = paste_into(out, swapped, m)
            timings["paste"] += (time.perf_counter() - t) * 1000
            # No region: the aligned crop maps entirely outside the frame, so nothing was replaced.
            (done if region is not None else unswapped).append(face)

        if options.enhance and eng.enhancer is not None:
            t = time.perf_counter()
            for face in done:
                eng.enhancer.enhance_into(out, face.kps, options.enhance_blend)
            timings["enhance"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - t_start) * 1000
        return SwapResult(
            frame=out, faces=tuple(faces), swapped=len(done), timings_ms=timings, unswapped=tuple(unswapped)
        )
