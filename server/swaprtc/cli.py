"""Command line: ``swaprtc serve|swap|models|bench``. Handlers are imported lazily so that
``swaprtc models list`` does not pay for importing aiortc."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from swaprtc.errors import SwapRTCError
from swaprtc.observability.logs import configure_logging
from swaprtc.settings import Settings, add_settings_flags

# Offline there is no frame deadline and the file is kept: every frame gets a full swap at full
# resolution (the live keyframe cadence and working resolution trade a little fidelity for CPU,
# which a file conversion need not).
OFFLINE_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"swap_every": 1, "swap_every_still": 0, "face_render_px": 0}
)

COMMON = [
    "models_dir",
    "engine",
    "providers",
    "detector",
    "auto_download",
    "log_level",
    "log_format",
    "inference_url",
    "inference_shared_memory",
]
# The embedded engine's model cadence and working resolution.
CADENCE = ["detect_every", "detect_every_tracked", "swap_every", "swap_every_still", "face_render_px"]
GPU = ["io_binding", "cuda_graph", "fp16", "trt_cache", "batch_window_ms", "max_batch"]
SERVE = [
    "host",
    "port",
    "ice_servers",
    "ice_loopback",
    "codec",
    "min_bitrate",
    "start_bitrate",
    "max_bitrate",
    "tls_cert",
    "tls_key",
    "tls_self_signed",
    "max_sessions",
    "max_upload_bytes",
    "max_upload_pixels",
    "session_idle_s",
    "swap_deadline_ms",
    "inference_threads",
    "pixel_threads",
    "workers",
    *CADENCE,
    "label",
    "label_position",
    "label_opacity",
    *GPU,
    "token",
    "allowed_origins",
    "trusted_proxies",
    "rate_session_per_min",
    "rate_offer_per_min",
    "rate_source_per_min",
    "rate_burst",
    "max_pending_sessions",
    "max_pending_per_client",
    "max_json_bytes",
    "max_sdp_bytes",
    "header_timeout_s",
    "body_timeout_s",
    "keepalive_timeout_s",
    "upload_threads",
    "max_queued_uploads",
    "max_uploads_per_client",
]
DISCLOSURE = ["label", "label_position", "label_opacity", "c2pa", "c2pa_cert", "c2pa_key"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swaprtc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the WebRTC service and web page")
    add_settings_flags(serve, COMMON + SERVE)

    swap = sub.add_parser("swap", help="swap faces in an image or video file, offline")
    swap.add_argument("--source", required=True, help="photo of the source face")
    swap.add_argument("--target", required=True, help="image (jpg/png/webp) or video (mp4/mov/webm/mkv)")
    swap.add_argument("--output", required=True, help="output file; format from its extension")
    swap.add_argument("--many-faces", action="store_true", help="swap every face, not only the largest")
    swap.add_argument("--strength", type=float, default=1.0, help="identity strength 0..1")
    swap.add_argument("--enhance", action="store_true", help="run the face enhancer (neural engine)")
    swap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_settings_flags(
        swap,
        [*COMMON, *CADENCE, *DISCLOSURE, *GPU],
        Settings(**OFFLINE_DEFAULTS),
    )

    models = sub.add_parser("models", help="list, download and verify models")
    models.add_argument("action", choices=["list", "download", "verify"])
    models.add_argument("names", nargs="*", help="model names (default: see --all)")
    models.add_argument("--all", action="store_true", help="every model in the manifest")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    add_settings_flags(models, ["models_dir", "providers", "log_level", "log_format"])

    bench = sub.add_parser("bench", help="measure pipeline speed; prints JSON")
    bench.add_argument("--frames", type=int, default=60, help="frames per measurement")
    bench.add_argument("--output", default=None, help="also write the JSON here")
    bench.add_argument("--suite", default="all", help="which measurements (comma separated)")
    bench.add_argument(
        "--workers",
        dest="bench_workers",  # not Settings.workers: a list of counts to compare
        default=None,
        help="capacity: worker counts to compare (default 1,2)",
    )
    bench.add_argument(
        "--resolution",
        default=None,
        help="session_cost/capacity: 480p,720p (default both); embedded: first = main run (default 480p)",
    )
    bench.add_argument("--max-sessions", type=int, default=12, help="capacity: stop the ramp here")
    bench.add_argument(
        "--camera",
        default=None,
        help="capacity: still,drift,talking (comma list, default still); session_cost: one (default drift)",
    )
    bench.add_argument(
        "--step-s", type=float, default=8.0, help="capacity: seconds per step; session_cost: per server run"
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="session_cost: whole-process before/after server runs each (0 = step table only)",
    )
    bench.add_argument(
        "--baseline",
        default=None,
        help="session_cost: the whole-process 'before' runs this git commit's server code",
    )
    bench.add_argument(
        "--ramp-all", action="store_true", help="capacity: measure every step, even after failures"
    )
    bench.add_argument("--pairs", type=int, default=None, help="quality: at most this many ordered pairs")
    bench.add_argument("--photos", default=None, help="quality: only these photos (comma separated names)")
    bench.add_argument(
        "--repo-photos-only", action="store_true", help="quality: skip the group photo fetched with pip"
    )
    bench.add_argument("--sheet", default=None, help="quality: write the contact sheet PNG here")
    bench.add_argument("--streams", default=None, help="gpu: concurrent stream counts (default 1,4,16,64)")
    bench.add_argument("--seconds", type=float, default=5.0, help="gpu: seconds per stream count")
    bench.add_argument(
        "--weights", choices=["auto", "real", "standins"], default="auto", help="gpu: which neural models"
    )
    bench.add_argument("--enhance", action="store_true", help="gpu: run the enhancer too")
    add_settings_flags(bench, [*COMMON, *CADENCE, *GPU])

    repo = sub.add_parser("triton-repo", help="write a Triton Inference Server model repository")
    repo.add_argument("out", help="repository folder to write (models are copied, or linked with --link)")
    repo.add_argument("--link", action="store_true", help="symlink the model files instead of copying")
    repo.add_argument("--max-batch", type=int, default=16, help="max_batch_size of batchable models")
    repo.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batching queue delay")
    repo.add_argument("--instances", type=int, default=1, help="model instances per device")
    repo.add_argument("--kind", choices=["gpu", "cpu"], default="gpu", help="instance group kind")
    repo.add_argument("--no-tensorrt", action="store_true", help="no TensorRT accelerator")
    repo.add_argument("--fp32", action="store_true", help="TensorRT in FP32 instead of FP16")
    repo.add_argument(
        "--trt-cache", default=None, help="TensorRT engine cache path inside the Triton container"
    )
    repo.add_argument("--json", action="store_true", help="machine-readable summary")
    add_settings_flags(repo, ["models_dir", "log_level", "log_format"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        defaults = OFFLINE_DEFAULTS if args.command == "swap" else None
        settings = Settings.from_env(defaults=defaults).with_args(args)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            from swaprtc.rtc.app import serve

            return serve(settings)
        if args.command == "swap":
            from swaprtc.offline import run_swap

            return run_swap(args, settings)
        if args.command == "models":
            from swaprtc.models.cli import run_models

            return run_models(args, settings)
        if args.command == "triton-repo":
            from swaprtc.inference.triton_repo import run_triton_repo

            return run_triton_repo(args, settings)
        if args.command == "bench":
            from swaprtc.bench import run_bench

            return run_bench(args, settings)
    except SwapRTCError as exc:
        print(f"swaprtc: error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
