"""Hash every output frame of the embedded engine over fixed streams, to prove that a speed change
left the output byte-identical: run it before and after, then compare.

    python tools/embedded_frame_hashes.py --out before.json     # on the old commit
    python tools/embedded_frame_hashes.py --out after.json      # on the new one
    python tools/embedded_frame_hashes.py --compare before.json after.json

Streams: four source/target pairs of tests/data (two sources turned, so the mirror path runs),
default options and a mouth mask at 0.7 strength, at cadence 1 (every frame a full swap) and 3
(keyframes and reused frames), on the drifting 640x480 stream of ``swaprtc bench``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from swaprtc.embedded.bench import live_frames
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.types import SwapOptions

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PAIRS = (
    ("astronaut.png", "obama.jpg"),
    ("obama_turned.jpg", "biden.jpg"),
    ("grace_hopper.jpg", "obama_turned.jpg"),
    ("biden.jpg", "grace_hopper.jpg"),
)
OPTIONS = {"default": SwapOptions(), "mouth_mask": SwapOptions(mouth_mask=True, strength=0.7)}


def _photo(name: str) -> np.ndarray:
    image = cv2.imread(str(DATA / name))
    if image is None:
        raise FileNotFoundError(DATA / name)
    return np.asarray(image)


def frame_hashes(models_dir: Path, frames: int) -> dict[str, list[str]]:
    cv2.setNumThreads(1)
    out: dict[str, list[str]] = {}
    for every in (1, 3):
        engine = EmbeddedEngine.from_paths(
            models_dir / "retinaface_mnet025.onnx", models_dir / "face_landmark.tflite", swap_every=every
        )
        for source_name, target_name in PAIRS:
            source = engine.prepare_source(_photo(source_name))
            stream = live_frames(_photo(target_name), frames)
            for name, options in OPTIONS.items():
                processor = engine.open_stream()
                out[f"every{every}:{source_name}>{target_name}:{name}"] = [
                    hashlib.sha256(processor.process(f, source, options, i / 30).frame.tobytes()).hexdigest()[
                        :16
                    ]
                    for i, f in enumerate(stream)
                ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--frames", type=int, default=40, help="frames per stream")
    parser.add_argument("--out", type=Path, help="write the hashes here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        differing = {
            k: sum(a != b for a, b in zip(v, after.get(k, []), strict=False)) for k, v in before.items()
        }
        total = sum(len(v) for v in before.values())
        if before.keys() != after.keys() or any(differing.values()):
            print(json.dumps({"identical": False, "frames": total, "differing": differing}))
            return 1
        print(json.dumps({"identical": True, "frames": total, "streams": len(before)}))
        return 0
    if args.out is None:
        parser.error("--out or --compare")
    args.out.write_text(json.dumps(frame_hashes(args.models_dir, args.frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
