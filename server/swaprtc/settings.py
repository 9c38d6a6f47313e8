"""One typed settings object, built from defaults, then ``SWAPRTC_*`` environment variables,
then command-line flags (flags win)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from swaprtc.errors import SwapRTCError
from swaprtc.resources import default_models_dir

DEFAULT_MODELS_DIR = default_models_dir()

CHOICES: dict[str, tuple[str, ...]] = {
    "engine": ("auto", "neural", "embedded"),
    "codec": ("vp8", "h264"),
    "detector": ("retinaface", "scrfd"),
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("text", "json"),
    "io_binding": ("auto", "on", "off"),
    "fp16": ("auto", "on", "off"),
    "inference_shared_memory": ("auto", "on", "off"),
    "label_position": ("top-left", "top-right", "bottom-left", "bottom-right"),
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    engine: str = "auto"  # auto | neural | embedded
    models_dir: Path = DEFAULT_MODELS_DIR
    # Execution provider preference, best first; unavailable ones are skipped.
    providers: tuple[str, ...] = (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CoreMLExecutionProvider",
        "CPUExecutionProvider",
    )
    detector: str = "retinaface"  # retinaface (embedded, default) | scrfd
    auto_download: bool = True  # fetch missing embedded models on start
    # WebRTC
    ice_servers: tuple[str, ...] = ()  # e.g. stun:host:3478, turn:user:pass@host:3478
    ice_loopback: bool = False  # also offer 127.0.0.1 host candidates (loopback-only networks)
    codec: str = "vp8"  # vp8 | h264
    min_bitrate: int = 500_000
    start_bitrate: int = 1_500_000
    max_bitrate: int = 4_000_000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False  # serve https with a throw-away certificate (LAN use)
    # Sessions and uploads
    max_sessions: int = 8
    max_upload_bytes: int = 10 * 1024 * 1024
    max_upload_pixels: int = 40_000_000
    session_idle_s: float = 15.0  # DataChannel silence before a session is dropped
    # Longest a frame waits for its swap before it goes out with faces hidden instead.
    swap_deadline_ms: int = 200
    inference_threads: int = 1
    # OpenCV threads per serving process, for the per-frame pixel work (conversions, engine glue).
    # 1: each session's frame runs on its own executor thread; a pool would spin-wait between calls
    # and cost 1-3 ms CPU per 480p frame (docs/BENCHMARKS.md, "One session's server CPU").
    pixel_threads: int = 1
    # Worker processes behind one public port: a number, or "auto" for the usable cores.
    # "1" keeps everything in one process (docs/RTC.md, "Worker processes").
    workers: str = "1"
    detect_every: int = 5  # run the detector every N frames while tracking holds
    # Embedded engine, one-face mode, while its face is followed surely: the detector only looks for
    # a new face, so it can run less often (docs/BENCHMARKS.md, "Embedded engine").
    detect_every_tracked: int = 15
    # Embedded engine: a full swap every N frames; the frames between move its rendered face by the
    # face's measured motion (a keyframe comes at once when the motion is unsure or large). 1 = every
    # frame in full.
    swap_every: int = 3
    # Embedded engine: while the face holds still (lips, eyelids and brows measured where the
    # keyframe had them), its keyframe is reused for up to this many frames instead of
    # ``swap_every``; speech or a blink brings the next keyframe on the ``swap_every`` cadence.
    # 0 = the fixed ``swap_every`` cadence whatever the face does.
    swap_every_still: int = 15
    # Embedded engine: a face whose box (face and the ring around it) is larger than this many
    # pixels across is rendered at this size and scaled up into the frame; the target's own picture
    # under it stays at full resolution. 0 = always at full resolution.
    face_render_px: int = 256
    # GPU path (neural engine). Each falls back cleanly on a CPU and is reported by /api/info.
    io_binding: str = "auto"  # auto = pre-allocated device buffers when CUDA really runs; on | off
    cuda_graph: bool = True  # capture CUDA graphs for the fixed-shape models (swapper, enhancer)
    fp16: str = "auto"  # InSwapper fp16: auto = only on a GPU provider AND if it matches fp32 at load
    trt_cache: bool = True  # TensorRT engine + timing caches in <models_dir>/trt-cache
    # Cross-session batching: requests from all sessions wait at most this long to share one call
    # (0 = no scheduler, every call runs on its own).
    batch_window_ms: float = 2.0
    max_batch: int = 16  # largest batch one model call takes (models fixed at batch 1 stay at 1)
    # Shared inference tier: grpc://HOST:PORT of a Triton server holding the neural models
    # (`swaprtc triton-repo`); empty = models run in this process.
    inference_url: str = ""
    # Tensors through Triton's system shared memory: auto = when the server can open ours (same host).
    inference_shared_memory: str = "auto"
    # Disclosure (operator only; the page cannot change these). Every swapped frame carries a
    # visible "AI-generated" label; `swaprtc swap` outputs also carry C2PA content credentials.
    label: bool = True
    label_position: str = "top-right"
    label_opacity: float = 0.85
    c2pa: bool = True
    c2pa_cert: Path | None = None  # PEM certificate chain (signer first); with c2pa_key
    c2pa_key: Path | None = None  # PEM private key of the signer
    log_level: str = "info"
    log_format: str = "text"  # text | json (one object per line, with the session id)
    # Access and abuse (docs/API.md, "Limits and access")
    token: str | None = None  # required by every API call when set
    allowed_origins: tuple[str, ...] = ()  # page origins besides the server's own (reverse proxies)
    trusted_proxies: tuple[str, ...] = ()  # peer addresses whose X-Forwarded-For is believed
    rate_session_per_min: float = 30.0  # per client address; 0 = unlimited
    rate_offer_per_min: float = 30.0
    rate_source_per_min: float = 30.0
    rate_burst: int = 10
    max_pending_sessions: int = 32  # sessions not yet connecting (they hold no capacity)
    max_pending_per_client: int = 4
    # Request limits
    max_json_bytes: int = 64 * 1024
    max_sdp_bytes: int = 32 * 1024
    header_timeout_s: float = 10.0  # a request head must arrive within this
    body_timeout_s: float = 60.0  # a request body must arrive within this
    keepalive_timeout_s: float = 30.0
    upload_threads: int = 1  # image decodes and source preparation, apart from live video
    max_queued_uploads: int = 8  # uploads waiting for an upload thread; more get 503 busy
    max_uploads_per_client: int = 2  # upload bodies one address sends at once; more get 429 busy

    def __post_init__(self) -> None:
        # Accept short provider names (CUDA, TensorRT, CPU...) as well as onnxruntime's full ones.
        object.__setattr__(self, "providers", tuple(normalise_provider(p) for p in self.providers))
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise SettingsError(
                    f"invalid {name} {value!r} (--{name.replace('_', '-')} / SWAPRTC_{name.upper()}): "
                    f"choose one of {', '.join(allowed)}"
                )
        for name in (
            "port",
            "max_sessions",
            "max_upload_bytes",
            "max_upload_pixels",
            "inference_threads",
            "pixel_threads",
            "detect_every",
            "detect_every_tracked",
            "swap_every",
            "swap_deadline_ms",
            "max_batch",
            "rate_burst",
            "max_pending_sessions",
            "max_pending_per_client",
            "max_json_bytes",
            "max_sdp_bytes",
            "upload_threads",
            "max_queued_uploads",
            "max_uploads_per_client",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"invalid {name} {getattr(self, name)!r}: must be at least 1")
        self.worker_count()  # validates
        if self.swap_every_still < 0:
            raise SettingsError(
                f"invalid swap_every_still {self.swap_every_still!r}: 0 (fixed cadence) or more"
            )
        if self.face_render_px != 0 and self.face_render_px < 32:
            raise SettingsError(
                f"invalid face_render_px {self.face_render_px!r}: 0 (full resolution) or at least 32"
            )
        if not 0 <= self.batch_window_ms <= 1000:
            raise SettingsError(f"invalid batch_window_ms {self.batch_window_ms!r}: must be 0..1000")
        if not self.token:
            object.__setattr__(self, "token", None)  # an empty SWAPRTC_TOKEN means no token
        for name in ("header_timeout_s", "body_timeout_s", "keepalive_timeout_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"invalid {name} {getattr(self, name)!r}: must be positive")
        for name in ("rate_session_per_min", "rate_offer_per_min", "rate_source_per_min"):
            if getattr(self, name) < 0:
                raise SettingsError(f"invalid {name} {getattr(self, name)!r}: 0 (unlimited) or more")
        if self.max_sdp_bytes >= self.max_json_bytes:
            raise SettingsError(
                "max_sdp_bytes must be smaller than max_json_bytes (the offer JSON holds the SDP)"
            )
        if self.session_idle_s <= 0:
            raise SettingsError(f"invalid session_idle_s {self.session_idle_s!r}: must be positive")
        if not 0 < self.min_bitrate <= self.start_bitrate <= self.max_bitrate:
            raise SettingsError(
                "bitrates must satisfy 0 < min_bitrate <= start_bitrate <= max_bitrate "
                f"(got {self.min_bitrate}, {self.start_bitrate}, {self.max_bitrate})"
            )
        if self.inference_url and not _is_grpc_url(self.inference_url):
            raise SettingsError(
                f"invalid inference_url {self.inference_url!r} (--inference-url / SWAPRTC_INFERENCE_URL): "
                "use grpc://HOST:PORT"
            )
        if not 0.0 <= self.label_opacity <= 1.0:
            raise SettingsError(f"invalid label_opacity {self.label_opacity!r}: must be 0..1")
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            raise SettingsError("C2PA signing needs both --c2pa-cert and --c2pa-key")
        if self.tls_self_signed and self.tls_cert is not None:
            raise SettingsError("choose either --tls-self-signed or --tls-cert/--tls-key, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("TLS needs both --tls-cert and --tls-key")

    def worker_count(self) -> int:
        """``workers`` resolved: ``auto`` is the cores this process may run on."""
        text = self.workers.strip().lower()
        if text == "auto":
            return max(
                1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            )
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            raise SettingsError(
                f"invalid workers {self.workers!r} (--workers / SWAPRTC_WORKERS): a number >= 1 or auto"
            )
        return count

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None
    ) -> Settings:
        """``defaults`` replaces built-in defaults for one command (environment and flags still win)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(defaults or {})
        hints = get_type_hints(cls)
        for f in fields(cls):
            raw = env.get(f"SWAPRTC_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(hints[f.name], raw, f.name)
        return cls(**values)

    def with_args(self, args: argparse.Namespace) -> Settings:
        """Overlay parsed flags whose value is not None (flags default to None)."""
        names = {f.name for f in fields(self)}
        given = {k: v for k, v in vars(args).items() if k in names and v is not None}
        hints = get_type_hints(type(self))
        for k, v in list(given.items()):
            if isinstance(v, str):
                given[k] = _parse(hints[k], v, k)
            elif isinstance(v, list):  # repeatable flags, each may also be comma separated
                given[k] = tuple(p.strip() for item in v for p in str(item).split(",") if p.strip())
        return replace(self, **given)


class SettingsError(SwapRTCError):
    code = "bad_setting"


KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


def _is_grpc_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme == "grpc" and bool(parts.hostname) and parts.port is not None
    except ValueError:
        return False


def normalise_provider(name: str) -> str:
    """``cuda`` / ``CUDA`` / ``CUDAExecutionProvider`` -> ``CUDAExecutionProvider``."""
    key = name.strip().lower().removesuffix("executionprovider")
    for full in KNOWN_PROVIDERS:
        if full.lower().removesuffix("executionprovider") == key:
            return full
    raise SettingsError(
        f"unknown execution provider {name!r}: use e.g. TensorRT, CUDA, CoreML, CPU "
        f"(or the full onnxruntime names: {', '.join(KNOWN_PROVIDERS)})"
    )


def _parse(hint: Any, raw: str, name: str) -> Any:
    text = str(hint)
    try:
        if hint is bool or text == "bool":
            if raw.strip().lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.strip().lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if hint is int or text == "int":
            return int(raw)
        if hint is float or text == "float":
            return float(raw)
        if "tuple" in text:
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if "Path" in text:
            return Path(raw) if raw else None
        return raw
    except ValueError as exc:
        raise SettingsError(f"invalid value for SWAPRTC_{name.upper()} / --{name}: {raw!r}") from exc


ON_OFF = ("label", "c2pa")  # booleans spelled --name on|off


def add_settings_flags(
    parser: argparse.ArgumentParser, names: list[str], defaults: Settings | None = None
) -> None:
    """Add ``--name`` flags (default None, so unset flags do not override env); ``defaults`` is
    what the help shows, for a command whose defaults differ."""
    defaults = Settings() if defaults is None else defaults
    for name in names:
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        env = f"SWAPRTC_{name.upper()}"
        if name in ON_OFF:
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                choices=("on", "off"),
                help=f"(env {env}, default {'on' if default else 'off'})",
            )
        elif isinstance(default, bool):
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=f"(env {env}, default {default})",
            )
        elif isinstance(default, tuple):
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                action="append",
                help=f"repeatable (env {env}, comma separated)",
            )
        else:
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                choices=CHOICES.get(name),
                help=f"(env {env}, default {default})",
            )
