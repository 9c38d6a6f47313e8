"""Per-session stream statistics, reported on the DataChannel once per second."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

EMA = 0.2  # weight of the newest sample in running averages


def _ema(old: float | None, new: float) -> float:
    return new if old is None else old + EMA * (new - old)


@dataclass
class StreamStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    swapped_frames: int = 0
    hidden_frames: int = 0  # frames sent with faces hidden (not swapped yet, engine error, too slow)
    engine_errors: int = 0
    faces: int = 0  # faces in the latest processed frame
    hidden: int = 0  # faces hidden in the latest sent frame
    latency_ms: float | None = None  # arrival of the input frame to the output frame being handed on
    # Faces of the latest processed frame: {"person", "box" (0..1), "source", "state"} (docs/API.md).
    people: list[dict[str, object]] = field(default_factory=list)
    hidden_reason: str | None = None  # why faces are hidden in the latest sent frame, for people
    stages_ms: dict[str, float] = field(default_factory=dict)
    _last_t: float = field(default_factory=time.monotonic)
    _last_in: int = 0
    _last_out: int = 0

    def record_stages(self, timings: Mapping[str, float]) -> None:
        for name, ms in timings.items():
            self.stages_ms[name] = _ema(self.stages_ms.get(name), float(ms))

    def record_latency(self, ms: float) -> None:
        self.latency_ms = _ema(self.latency_ms, ms)

    def snapshot(self, engine: str, now: float | None = None) -> dict[str, object]:
        """The ``stats`` message; fps are measured since the previous snapshot."""
        now = time.monotonic() if now is None else now
        dt = max(now - self._last_t, 1e-6)
        fps_in = (self.frames_in - self._last_in) / dt
        fps_out = (self.frames_out - self._last_out) / dt
        self._last_t, self._last_in, self._last_out = now, self.frames_in, self.frames_out
        return {
            "type": "stats",
            "fps_in": round(fps_in, 2),
            "fps_out": round(fps_out, 2),
            "dropped": self.dropped,
            "stages_ms": {k: round(v, 2) for k, v in self.stages_ms.items()},
            "latency_ms": round(self.latency_ms or 0.0, 2),
            "engine": engine,
            "faces": self.faces,
            "hidden": self.hidden,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "swapped_frames": self.swapped_frames,
            "hidden_frames": self.hidden_frames,
            "engine_errors": self.engine_errors,
            "people": self.people,
            "hidden_reason": self.hidden_reason,
        }
