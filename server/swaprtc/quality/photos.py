"""The quality set: single-face photos of different people, each cut to the same framing.

Public-domain photos ship in the repository (tests/data, see its README). The group photo in the
insightface 2.1 wheel (``insightface/data/images/t1.jpg``) adds six more people; its copyright is
not stated by the package, so it is never stored in the repository: the pinned wheel is fetched
with pip at run time (the user's pip configuration applies) and its faces are cropped in memory.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from swaprtc.models.manifest import Member, PypiSource
from swaprtc.models.sources import check_wheel, pip_download
from swaprtc.types import Face

PORTRAIT_SIZE = 384  # side of every quality-set image (px)
FACE_FRACTION = 0.45  # face box side / image side, like a webcam close-up

REPO_DATA = Path(__file__).resolve().parents[3] / "tests" / "data"

# (file in tests/data, where it comes from); all public domain, see tests/data/README.md.
REPO_PHOTOS = {
    "astronaut": ("astronaut.png", "scikit-image 0.26 skimage.data.astronaut() (NASA, public domain)"),
    "grace_hopper": ("grace_hopper.jpg", "matplotlib 3.11.2 sample_data (US Navy, public domain)"),
    "obama": ("obama.jpg", "face-recognition 1.3.0 sdist tests/test_images (White House, public domain)"),
    "biden": ("biden.jpg", "face-recognition 1.3.0 sdist tests/test_images (White House, public domain)"),
}
GROUP_WHEEL = PypiSource(
    package="insightface",
    version="2.1",
    wheel_sha256="dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399",
    member=Member(path="insightface/data/images/t1.jpg"),
)
GROUP_FACES = 6
GROUP_ORIGIN = (
    "insightface 2.1 wheel, insightface/data/images/t1.jpg (group photo; copyright not stated by the "
    "package, so fetched at run time and never stored or shown in the repository)"
)


@dataclass(frozen=True, eq=False)
class QualityPhoto:
    name: str
    image: np.ndarray  # (PORTRAIT_SIZE, PORTRAIT_SIZE, 3) BGR
    origin: str
    public_domain: bool  # may be shown in committed documents (contact sheet)


Detect = Callable[[np.ndarray], list[Face]]


def portrait(image: np.ndarray, face: Face, size: int = PORTRAIT_SIZE) -> np.ndarray:
    """A square crop centred on ``face`` with the face at FACE_FRACTION of its side, resized."""
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    side = max(x2 - x1, y2 - y1) / FACE_FRACTION
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    scale = size / side
    affine = np.array([[scale, 0.0, size / 2 - cx * scale], [0.0, scale, size / 2 - cy * scale]])
    return cv2.warpAffine(
        image,
        affine,
        (size, size),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT101,
    )


def _largest(faces: list[Face], name: str) -> Face:
    if not faces:
        raise ValueError(f"quality photo {name}: no face found")
    return max(faces, key=lambda f: f.area)


def repo_photos(detect: Detect, names: Sequence[str] | None = None) -> list[QualityPhoto]:
    out = []
    for name, (file, origin) in REPO_PHOTOS.items():
        if names is not None and name not in names:
            continue
        image = cv2.imread(str(REPO_DATA / file), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"quality photo {REPO_DATA / file} missing (run from a source checkout)")
        out.append(QualityPhoto(name, portrait(image, _largest(detect(image), name)), origin, True))
    return out


def group_wheel(cache_dir: Path) -> Path:
    """The pinned insightface wheel in ``cache_dir``, downloaded with pip on first use."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for candidate in sorted(cache_dir.glob(GROUP_WHEEL.wheel_prefix + "*.whl")):
        check_wheel(candidate, GROUP_WHEEL)
        return candidate
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        wheel = pip_download(GROUP_WHEEL, Path(tmp))
        return wheel.replace(cache_dir / wheel.name)


def group_photos(detect: Detect, cache_dir: Path) -> list[QualityPhoto]:
    """The group photo's faces, left to right."""
    with zipfile.ZipFile(group_wheel(cache_dir)) as archive:
        data = np.frombuffer(archive.read(GROUP_WHEEL.member.path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {GROUP_WHEEL.member.path} from the insightface wheel")
    faces = sorted(detect(image), key=lambda f: float(f.bbox[0]))
    if len(faces) != GROUP_FACES:
        raise ValueError(f"expected {GROUP_FACES} faces in the group photo, found {len(faces)}")
    return [
        QualityPhoto(f"group_{i + 1}", portrait(image, face), GROUP_ORIGIN, False)
        for i, face in enumerate(faces)
    ]


def quality_set(
    detect: Detect, cache_dir: Path | None, names: Sequence[str] | None = None
) -> list[QualityPhoto]:
    """Repository photos, plus the group photo's faces unless ``cache_dir`` is None. ``names``
    restricts the set (``group_N`` names the group photo's faces)."""
    photos = repo_photos(detect, names)
    wants_group = names is None or any(n.startswith("group_") for n in names)
    if cache_dir is not None and wants_group:
        photos += [p for p in group_photos(detect, cache_dir) if names is None or p.name in names]
    return photos
