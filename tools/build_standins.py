"""Build random-weight stand-ins of the neural models, export them to ONNX and time them.

    python tools/build_standins.py [--out DIR] [--only det_10g,w600k_r50,inswapper_128,gfpgan_1.4]
    python tools/build_standins.py --time-only      # re-time files already built (no torch needed)
    python tools/build_standins.py --fp16           # inswapper_128_fp16.onnx from the built fp32 one

The stand-ins have the real architectures and I/O contracts (DESIGN.md §4) but random weights: their
outputs are meaningless, they exist so `swaprtc bench` measures realistic compute. Building needs
PyTorch, which is not a project dependency (`pip install torch==2.13.0`). See docs/standins.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from standins import timing
from standins.fp16 import FP16_MISSING, write_fp16
from standins.specs import SPECS, StandinSpec

DEFAULT_OUT = Path.home() / ".cache" / "swaprtc" / "standins"
TORCH_MISSING = (
    "PyTorch is needed to build the stand-ins and is not a project dependency.\n"
    "Install it into this environment with:  pip install torch==2.13.0"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--only", default="", help="comma-separated stand-in names (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per model after one warm-up")
    parser.add_argument("--no-time", action="store_true", help="skip the ONNX Runtime timing")
    parser.add_argument("--time-only", action="store_true", help="time the files in --out, build nothing")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random weights")
    parser.add_argument(
        "--fp16", action="store_true", help="only convert inswapper_128.onnx in --out to fp16 (no torch)"
    )
    return parser.parse_args(argv)


def select(only: str) -> list[StandinSpec]:
    wanted = [name for name in only.split(",") if name]
    unknown = sorted(set(wanted) - {spec.name for spec in SPECS})
    if unknown:
        known = ", ".join(spec.name for spec in SPECS)
        raise SystemExit(f"unknown stand-in(s): {', '.join(unknown)}; known: {known}")
    return [spec for spec in SPECS if not wanted or spec.name in wanted]


def report_time(spec: StandinSpec, path: Path, runs: int) -> None:
    seconds = timing.time_model(path, runs)
    print(
        f"{'':14s} ORT CPU {seconds * 1e3:.0f} ms/call, median of {runs} "
        f"(DESIGN {spec.design_seconds * 1e3:.0f} ms on 2 cores); {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def build(spec: StandinSpec, path: Path, seed: int) -> None:
    """Build, count and export one stand-in; the torch model is freed before returning."""
    import torch
    from standins.builders import BUILDERS
    from standins.export import export
    from standins.macs import count_macs, count_params

    torch.manual_seed(seed)
    make_model, make_example = BUILDERS[spec.name]
    with torch.no_grad():
        model = make_model().eval()
        example = make_example()
        params, macs = count_params(model), count_macs(model, example)
        start = time.perf_counter()
        export(model, example, spec, path)
    del model
    gc.collect()
    print(
        f"{spec.name:14s} {path}  {path.stat().st_size / 1e6:.1f} MB, exported in "
        f"{time.perf_counter() - start:.0f} s\n"
        f"{'':14s} params {params / 1e6:.1f} M (DESIGN {spec.design_params_m} M), "
        f"{macs / 1e9:.1f} GMACs (DESIGN {spec.design_gmacs})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    specs = select(args.only)
    if args.fp16:
        if importlib.util.find_spec("onnxconverter_common") is None:
            print(FP16_MISSING, file=sys.stderr)
            return 2
        src, dst = args.out / "inswapper_128.onnx", args.out / "inswapper_128_fp16.onnx"
        if not src.is_file():
            print(f"{src} missing: build it first", file=sys.stderr)
            return 2
        write_fp16(src, dst)
        print(f"inswapper_128_fp16 {dst}  {dst.stat().st_size / 1e6:.1f} MB", flush=True)
        return 0
    if args.time_only:
        for spec in specs:
            path = args.out / spec.file
            if not path.is_file():
                print(f"{spec.name:14s} {path} missing: build it first", file=sys.stderr)
                continue
            print(f"{spec.name:14s} {path}", flush=True)
            report_time(spec, path, args.runs)
        return 0
    if importlib.util.find_spec("torch") is None:
        print(TORCH_MISSING, file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in specs:  # one model in memory at a time
        path = args.out / spec.file
        build(spec, path, args.seed)
        if not args.no_time:
            report_time(spec, path, args.runs)
    print("Stand-ins have random weights: their outputs are meaningless; use them for timing only.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
