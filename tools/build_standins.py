"""Build random-weight stand-ins of the neural models, export them to ONNX and time them.

    python tools/build_standins.py [--out DIR] [--only det_10g,w600k_r50,inswapper_128,gfpgan_1.4]

The stand-ins have the real architectures and I/O contracts (DESIGN.md §4) but random weights: their
outputs are meaningless, they exist so `swaprtc bench` measures realistic compute. Needs PyTorch,
which is not a project dependency (`pip install torch==2.13.0`).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path.home() / ".cache" / "swaprtc" / "standins"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--only", default="", help="comma-separated stand-in names (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per model after one warm-up")
    parser.add_argument("--no-time", action="store_true", help="skip the ONNX Runtime timing")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if importlib.util.find_spec("torch") is None:
        print(
            "PyTorch is needed to build the stand-ins and is not a project dependency.\n"
            "Install it into this environment with:  pip install torch==2.13.0",
            file=sys.stderr,
        )
        return 2
    # Imported only now: everything below needs torch.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from standins import timing
    from standins.export import export
    from standins.macs import count_macs, count_params
    from standins.specs import SPECS, StandinSpec

    wanted = [name for name in args.only.split(",") if name]
    unknown = sorted(set(wanted) - {spec.name for spec in SPECS})
    if unknown:
        print(
            f"unknown stand-in(s): {', '.join(unknown)}; known: {', '.join(s.name for s in SPECS)}",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)

    def build_one(spec: StandinSpec) -> None:
        torch.manual_seed(args.seed)
        model = spec.build().eval()
        example = spec.example()
        params, macs = count_params(model), count_macs(model, example)
        path = args.out / spec.file
        start = time.perf_counter()
        export(model, example, spec, path)
        del model
        gc.collect()
        print(
            f"{spec.name:14s} {path}  {path.stat().st_size / 1e6:.1f} MB, exported in "
            f"{time.perf_counter() - start:.0f} s"
        )
        print(
            f"{'':14s} params {params / 1e6:.1f} M (DESIGN {spec.design_params_m} M), "
            f"{macs / 1e9:.1f} GMACs (DESIGN {spec.design_gmacs})"
        )
        if not args.no_time:
            seconds = timing.time_model(path, args.runs)
            print(
                f"{'':14s} ORT CPU {seconds * 1e3:.0f} ms/call, median of {args.runs} "
                f"(DESIGN {spec.design_seconds * 1e3:.0f} ms on 2 cores)"
            )
        sys.stdout.flush()

    for spec in SPECS:
        if not wanted or spec.name in wanted:
            build_one(spec)
            gc.collect()  # one model in memory at a time
    print("Stand-ins have random weights: their outputs are meaningless; use them for timing only.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
