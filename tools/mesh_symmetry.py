"""Derive the left-right symmetry map of MediaPipe's face mesh (server/swaprtc/embedded/symmetry.py).

Each frontal test photo's 3-D mesh is reflected in its own best mirror plane (found iteratively
from the matched pairs), the point-to-mirrored-point distances are summed over the photos, and a
least-cost assignment pairs every point with its mirror image. Prints the midline and pairs in the
format symmetry.py stores. Needs scipy (installed with the dev extra, via scikit-image).

    python tools/mesh_symmetry.py --models-dir .cache/models
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment
from swaprtc.embedded.engine import EmbeddedEngine

PHOTOS = ("astronaut.png", "grace_hopper.jpg", "obama.jpg", "biden.jpg")
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def mirror_costs(xyz: np.ndarray) -> np.ndarray:
    """(468, 468) squared distances from each point to each point's mirror image, normalised."""
    p = xyz.astype(np.float64) - xyz.mean(axis=0)
    normal = p[263] - p[33]  # the eye line crosses the mirror plane at right angles
    normal /= np.linalg.norm(normal)
    cost = np.zeros((len(p), len(p)))
    for _ in range(3):
        mirrored = p - 2 * np.outer(p @ normal, normal)
        cost = ((p[:, None, :] - mirrored[None, :, :]) ** 2).sum(-1)
        _, match = linear_sum_assignment(cost)
        d = p - p[match]
        normal = np.linalg.svd(d.T @ d)[0][:, 0]  # refit the plane from the matched pairs
    return cost / np.median(cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    engine = EmbeddedEngine.from_paths(
        args.models_dir / "retinaface_mnet025.onnx", args.models_dir / "face_landmark.tflite"
    )
    total = np.zeros((468, 468))
    for name in PHOTOS:
        image = cv2.imread(str(DATA / name))
        xyz, _ = engine.source_mesh(image, engine.detect(image)[0])
        total += mirror_costs(xyz)
    _, sym = linear_sum_assignment(total)
    assert (sym[sym] == np.arange(len(sym))).all(), "not an involution"
    midline = " ".join(str(i) for i in range(len(sym)) if sym[i] == i)
    pairs = " ".join(f"{i}:{sym[i]}" for i in range(len(sym)) if sym[i] > i)
    print(textwrap.fill(midline, 100))
    print()
    print(textwrap.fill(pairs, 100))


if __name__ == "__main__":
    main()
