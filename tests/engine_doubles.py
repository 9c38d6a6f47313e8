"""Engine test doubles with observable behaviour, for the swap track and server tests.

``PaintEngine`` detects faces with the real RetinaFace detector and "swaps" by painting each chosen
face box a solid colour (the source's colour), so a test can tell a swapped pixel from a camera
pixel. It can be slow (``delay_s``, ``first_delay_s`` for a warm-up), and raise on chosen calls.
Like the real engines it lists every face it found but did not paint in ``SwapResult.unswapped``
(``max_swaps`` limits how many it paints); ``guard`` replaces the detector behind ``detect`` (the
quick detection the track hides faces with), so a test can make it miss faces.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence

import cv2
import numpy as np
from swaprtc.engine import Casting, single_source
from swaprtc.errors import NoFaceError
from swaprtc.pipeline.detector import Detector
from swaprtc.types import Face, SourceFace, SwapOptions, SwapResult

PAINT_BGR = (255, 0, 255)  # magenta: far from any skin tone


def paint_box(frame: np.ndarray, face: Face, colour: tuple[int, int, int]) -> None:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = face.bbox.astype(int)
    frame[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)] = colour


ASTRONAUT_FACE = Face(  # RetinaFace on skimage's astronaut (DESIGN.md §5)
    bbox=np.array([178, 59, 273, 178], np.float32),
    score=0.9999,
    kps=np.array([[203, 101], [247, 103], [223, 130], [201, 139], [246, 141]], np.float32),
)


class FixedFaceDetector:
    """Reports the same faces for every frame, instantly: for tests about timing, where a real
    detector's cost on a busy machine would blur what is measured."""

    def __init__(self, faces: tuple[Face, ...] = (ASTRONAUT_FACE,)) -> None:
        self.faces = faces

    def detect(self, frame: np.ndarray) -> list[Face]:
        return list(self.faces)


class PaintProcessor:
    def __init__(self, engine: PaintEngine) -> None:
        self.engine = engine
        self.resets = 0
        self.calls = 0
        self.timestamps: list[float | None] = []

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
        casting: Casting | None = None,
    ) -> SwapResult:
        index = self.engine.next_call()
        self.calls += 1
        self.timestamps.append(timestamp_s)
        delay = self.engine.first_delay_s if index == 1 else self.engine.delay_s
        if delay:
            time.sleep(delay)
        if index in self.engine.fail_on or (self.engine.fail_if and self.engine.fail_if(frame)):
            raise RuntimeError(f"deliberate engine failure on call {index}")
        t0 = time.perf_counter()
        faces = tuple(self.engine.detector.detect(frame))
        t1 = time.perf_counter()
        if source is None and casting is None:
            return SwapResult(frame, faces, 0, {"detect": (t1 - t0) * 1000})
        out = frame.copy()
        if casting is not None:
            choices = casting.choose(faces, options.many_faces, None)
        else:
            choices = single_source(faces, source, options.many_faces)
        if self.engine.max_swaps is not None:
            choices = [c if i < self.engine.max_swaps else None for i, c in enumerate(choices)]
        for face, chosen in zip(faces, choices, strict=True):
            if chosen is not None:
                paint_box(out, face, chosen.payload)
        t2 = time.perf_counter()
        return SwapResult(
            out,
            faces,
            sum(c is not None for c in choices),
            {"detect": (t1 - t0) * 1000, "swap": (t2 - t1) * 1000},
            unswapped=tuple(f for f, c in zip(faces, choices, strict=True) if c is None),
        )

    def reset(self) -> None:
        self.resets += 1


class PaintEngine:
    name = "paint"

    def __init__(
        self,
        detector: Detector,
        *,
        delay_s: float = 0.0,
        first_delay_s: float = 0.0,
        fail_on: Collection[int] = (),
        fail_if: Callable[[np.ndarray], bool] | None = None,
        detect_fails: bool = False,
        colour: tuple[int, int, int] = PAINT_BGR,
        colours: Sequence[tuple[int, int, int]] = (),
        max_swaps: int | None = None,
        guard: Detector | FixedFaceDetector | None = None,
    ) -> None:
        self.detector = detector
        self.max_swaps = max_swaps
        self.guard = guard if guard is not None else detector
        self.delay_s = delay_s
        self.first_delay_s = first_delay_s or delay_s
        self.fail_on = set(fail_on)
        self.fail_if = fail_if
        self.detect_fails = detect_fails
        self.colour = colour
        self.colours = list(colours)  # given out in turn by prepare_source, else ``colour``
        self.calls = 0
        self.processors: list[PaintProcessor] = []
        self._lock = threading.Lock()

    def next_call(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls

    def describe(self) -> dict[str, object]:
        return {"engine": self.name, "models": ["retinaface_mnet025"], "providers": ["CPUExecutionProvider"]}

    def detect(self, frame: np.ndarray) -> list[Face]:
        if self.detect_fails:
            raise RuntimeError("deliberate detector failure")
        return self.guard.detect(frame)

    def prepare_source(self, image: np.ndarray, face: Face | None = None) -> SourceFace:
        faces = self.detector.detect(image)
        if not faces:
            raise NoFaceError("no face found in the source image")
        face = face if face is not None else faces[0]
        x1, y1, x2, y2 = face.bbox.astype(int)
        crop = image[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)]
        ok, jpeg = cv2.imencode(".jpg", cv2.resize(crop, (64, 64)))
        assert ok
        colour = self.colours.pop(0) if self.colours else self.colour
        return SourceFace(self.name, face, len(faces), jpeg.tobytes(), colour)

    def open_stream(self) -> PaintProcessor:
        processor = PaintProcessor(self)
        self.processors.append(processor)
        return processor
