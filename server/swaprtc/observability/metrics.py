"""Prometheus metrics for one process.

One ``Metrics`` object per process, created by whoever builds the app and passed in: it owns its
own ``CollectorRegistry`` (never prometheus_client's global default registry), so two apps in one
process (tests) or several worker processes (a supervisor merges their ``render()`` output with a
``worker`` label) never share series. Every label takes values from a fixed set, so cardinality is
bounded whatever clients send.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Stage names the engines report in ``SwapResult.timings_ms`` (neural: detect, align, swap, paste,
# enhance; embedded: detect, landmarks, warp, color, blend). Anything else is counted as "other".
STAGES = ("detect", "landmarks", "align", "swap", "warp", "color", "blend", "paste", "enhance", "total")
# Why sessions end; SessionManager.remove() is called with one of these.
END_REASONS = (
    "client",  # DELETE /api/session
    "connection_ended",  # peer connection failed or closed
    "idle",  # control channel silent
    "unused",  # no source, no connection
    "never_connected",
    "offer_rejected",
    "shutdown",
)
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")

# Stage times: sub-millisecond (a cached crop) to seconds (the neural engine on a CPU).
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)


class Metrics:
    """Every series swaprtc exports, on one private registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "swaprtc_stage_seconds",
            "Time one processed frame spent in each pipeline stage (total = the whole engine call).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.frame_latency_seconds = Histogram(
            "swaprtc_frame_latency_seconds",
            "Arrival of a camera frame at the server to its processed frame being handed to the encoder.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.frames_in = Counter("swaprtc_frames_in", "Camera frames received.", registry=registry)
        self.frames_out = Counter("swaprtc_frames_out", "Frames sent back.", registry=registry)
        self.frames_dropped = Counter(
            "swaprtc_frames_dropped",
            "Frames never processed: replaced by a newer one while the engine was busy.",
            registry=registry,
        )
        self.frames_hidden = Counter(
            "swaprtc_frames_hidden",
            "Frames sent with faces hidden (swap not ready, too slow, engine error, face not swapped).",
            registry=registry,
        )
        self.frames_swapped = Counter(
            "swaprtc_frames_swapped", "Frames sent with at least one face swapped.", registry=registry
        )
        self.engine_errors = Counter(
            "swaprtc_engine_errors", "Engine calls that raised on a frame.", registry=registry
        )
        self.sessions = Gauge(
            "swaprtc_sessions",
            "Sessions in this process: open (all) and connected (peer connection up).",
            ["state"],
            registry=registry,
        )
        self.session_capacity = Gauge(
            "swaprtc_session_capacity",
            "Most sessions this process accepts (--max-sessions).",
            registry=registry,
        )
        self.workers = Gauge(
            "swaprtc_workers", "Serving processes behind this endpoint (1 per worker).", registry=registry
        )
        self.inference_threads = Gauge(
            "swaprtc_inference_threads",
            "Threads running model work (--inference-threads).",
            registry=registry,
        )
        self.pixel_threads = Gauge(
            "swaprtc_pixel_threads",
            "OpenCV threads of this process (--pixel-threads).",
            registry=registry,
        )
        self.session_ends = Counter(
            "swaprtc_session_ends", "Sessions ended, by reason.", ["reason"], registry=registry
        )
        self.http_requests = Counter(
            "swaprtc_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.uploads = Counter(
            "swaprtc_uploads",
            "Source photo uploads by result: ok or the error code answered.",
            ["result"],
            registry=registry,
        )
        self.model_info = Gauge(
            "swaprtc_model_info",
            "Models loaded: 1 per engine role with the execution provider that really runs it.",
            ["engine", "role", "provider"],
            registry=registry,
        )
        self.build_info = Gauge("swaprtc_build_info", "swaprtc version.", ["version"], registry=registry)
        self.workers.set(1)
        for state in ("open", "connected"):
            self.sessions.labels(state).set(0)
        for reason in END_REASONS:  # every reason present from the start, so rate() sees the first
            self.session_ends.labels(reason)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        self.uploads.labels("ok")

    # --- recording -----------------------------------------------------------------------------
    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        for name, ms in timings_ms.items():
            stage = name if name in STAGES else "other"
            self.stage_seconds.labels(stage).observe(max(float(ms), 0.0) / 1000.0)

    def session_ended(self, reason: str) -> None:
        self.session_ends.labels(reason if reason in END_REASONS else "other").inc()

    def http_request(self, route: str, method: str, status: int) -> None:
        self.http_requests.labels(route, method if method in METHODS else "other", str(status)).inc()

    def describe_engine(self, version: str, description: Mapping[str, object]) -> None:
        """Model/provider info from ``Engine.describe()``: ``providers`` maps a role to the list of
        providers its session really uses, best first."""
        self.build_info.labels(version).set(1)
        engine = str(description.get("engine", "unknown"))
        providers = description.get("providers")
        if isinstance(providers, Mapping):
            for role, used in providers.items():
                first = used[0] if isinstance(used, list | tuple) and used else "unknown"
                self.model_info.labels(engine, str(role), str(first)).set(1)

    # --- exposition ----------------------------------------------------------------------------
    def render(self) -> bytes:
        """The registry in Prometheus text format (what GET /metrics answers)."""
        return generate_latest(self.registry)
