"""Fixed facts about MediaPipe's 468-point face mesh topology, and pure geometry on meshes.

Index lists are contours of the canonical mesh (from MediaPipe's published face mesh connections):
the face oval, the two eye openings and the inner lip line, each in polygon order.
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_POINTS = 468

FACE_OVAL = np.array(
    [
        10,
        338,
        297,
        332,
        284,
        251,
        389,
        356,
        454,
        323,
        361,
        288,
        397,
        365,
        379,
        378,
        400,
        377,
        152,
        148,
        176,
        149,
        150,
        136,
        172,
        58,
        132,
        93,
        234,
        127,
        162,
        21,
        54,
        103,
        67,
        109,
    ],
    dtype=np.int64,
)
# "Left"/"right" are image left/right for a face looking at the camera.
LEFT_EYE = np.array(
    [
        33,
        7,
        163,
        144,
        145,
        153,
        154,
        155,
        133,
        173,
        157,
        158,
        159,
        160,
        161,
        246,
    ],
    dtype=np.int64,
)
RIGHT_EYE = np.array(
    [
        263,
        249,
        390,
        373,
        374,
        380,
        381,
        382,
        362,
        398,
        384,
        385,
        386,
        387,
        388,
        466,
    ],
    dtype=np.int64,
)
INNER_LIPS = np.array(
    [
        78,
        95,
        88,
        178,
        87,
        14,
        317,
        402,
        318,
        324,
        308,
        415,
        310,
        311,
        312,
        13,
        82,
        81,
        80,
        191,
    ],
    dtype=np.int64,
)
OUTER_LIPS = np.array(
    [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185],
    dtype=np.int64,
)
LEFT_BROW = np.array([70, 63, 105, 66, 107, 55, 65, 52, 53, 46], dtype=np.int64)
RIGHT_BROW = np.array([300, 293, 334, 296, 336, 285, 295, 282, 283, 276], dtype=np.int64)
NOSE_TIP = 1
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
EYE_OUTER_LEFT, EYE_OUTER_RIGHT = 33, 263  # used for the roll angle, as MediaPipe does


def five_points(mesh: np.ndarray) -> np.ndarray:
    """The detector's 5-keypoint layout (eyes, nose, mouth corners) taken from a dense mesh."""
    return np.stack(
        [
            mesh[LEFT_EYE].mean(axis=0),
            mesh[RIGHT_EYE].mean(axis=0),
            mesh[NOSE_TIP],
            mesh[MOUTH_LEFT],
            mesh[MOUTH_RIGHT],
        ]
    ).astype(np.float32)


def mesh_bbox(mesh: np.ndarray) -> np.ndarray:
    """(4,) float32 x1, y1, x2, y2 of the face oval."""
    pts = mesh[:, :2]
    return np.array([*pts.min(axis=0), *pts.max(axis=0)], dtype=np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (K, 3) int32 over ``points`` (N, 2), as indices into ``points``.

    Computed once per source face; the same topology is then reused for every frame, so the warp
    is a fixed piecewise-affine map between two meshes with the same connectivity.
    """
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(axis=0) - 10.0, pts.max(axis=0) + 10.0
    subdiv = cv2.Subdiv2D(
        (
            int(np.floor(lo[0])),
            int(np.floor(lo[1])),
            int(np.ceil(hi[0] - lo[0])) + 1,
            int(np.ceil(hi[1] - lo[1])) + 1,
        )
    )
    # Subdiv2D reports triangles by coordinates; map each back to the (first) index at that spot.
    index: dict[tuple[float, float], int] = {}
    for i, (x, y) in enumerate(pts.astype(np.float32)):
        key = (float(x), float(y))
        if key not in index:
            index[key] = i
            subdiv.insert((key[0], key[1]))
    tris = []
    for t in subdiv.getTriangleList():
        corners = [
            (float(np.float32(t[0])), float(np.float32(t[1]))),
            (float(np.float32(t[2])), float(np.float32(t[3]))),
            (float(np.float32(t[4])), float(np.float32(t[5]))),
        ]
        ids = [index.get(c) for c in corners]
        if None in ids:
            continue  # a triangle touching Subdiv2D's virtual outer vertices
        tris.append(ids)
    return np.asarray(tris, dtype=np.int32).reshape(-1, 3)


def blend_outline(mesh: np.ndarray, forehead_keep: float = 0.7) -> np.ndarray:
    """The face oval polygon with its forehead part lowered towards the eyes.

    The mesh's oval reaches the hairline, so a source with a fringe would carry its hair onto the
    target's forehead; keeping ``forehead_keep`` of the height above the eye line avoids that.
    """
    oval = mesh[FACE_OVAL].astype(np.float32)
    if forehead_keep >= 1.0:
        return oval  # nothing is lowered (what the lift below gives, without its dozen numpy calls)
    le, re = mesh[LEFT_EYE].mean(axis=0), mesh[RIGHT_EYE].mean(axis=0)
    centre = (le + re) / 2
    axis = re - le
    up = np.array([axis[1], -axis[0]], dtype=np.float32) / (np.linalg.norm(axis) + 1e-6)
    if np.dot(mesh[NOSE_TIP] - centre, up) > 0:
        up = -up  # "up" points away from the nose
    height = (oval - centre) @ up
    lift = np.clip(height, 0, None) * (1.0 - forehead_keep)
    return oval - lift[:, None] * up[None, :]


def inner_face(shape: tuple[int, ...], mesh: np.ndarray, share: float = 0.8) -> np.ndarray:
    """A boolean mask of the inner face (``share`` of the blend outline around its centre), where
    the swap shows at full weight: what the benchmarks and tests compare."""
    centre = mesh[FACE_OVAL].mean(axis=0)
    polygon = centre + (blend_outline(mesh) - centre) * share
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


# Landmarks that measure how open the eyes and mouth are (lid and lip midpoints, corners).
LEFT_LIDS, LEFT_CORNERS = (159, 145), (33, 133)
RIGHT_LIDS, RIGHT_CORNERS = (386, 374), (362, 263)
LIP_MIDS = (13, 14)


def _gap(mesh: np.ndarray, pair: tuple[int, int], across: tuple[int, int]) -> float:
    width = float(np.linalg.norm(mesh[across[0], :2] - mesh[across[1], :2]))
    return float(np.linalg.norm(mesh[pair[0], :2] - mesh[pair[1], :2])) / max(width, 1e-6)


def eye_openness(mesh: np.ndarray) -> tuple[float, float]:
    """Lid gap / eye width for the image-left and image-right eye (~0.3 open, < 0.1 closed)."""
    return _gap(mesh, LEFT_LIDS, LEFT_CORNERS), _gap(mesh, RIGHT_LIDS, RIGHT_CORNERS)


def mouth_openness(mesh: np.ndarray) -> float:
    """Inner lip gap / mouth width (0 closed, ~0.3 wide open)."""
    return _gap(mesh, LIP_MIDS, (MOUTH_LEFT, MOUTH_RIGHT))
