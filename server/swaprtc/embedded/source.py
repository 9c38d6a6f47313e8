"""The embedded engine's prepared source face: texture levels, 3-D mesh, and which triangles the
photo hides. Computed once per upload, kept in memory only; pure functions of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swaprtc.embedded import mesh as m
from swaprtc.embedded.shape import follower_weights
from swaprtc.embedded.symmetry import frontal, symmetry_map

TEXTURE_SIZE = 512  # long side of the largest source texture level (px)
MIN_LEVEL_SIZE = 48  # smallest level kept (px, long side)
# A point whose surroundings the photo shows at less than MIRROR_START of what the frame needs
# (projected area relative to 3-D area: the target's view of it, or the photo's view of its mirror
# image if that is worse) is turned away: its texture is blended over to the mirror image's,
# completely below MIRROR_FULL. A smooth per-point weight, so no triangle edge shows.
MIRROR_START, MIRROR_FULL = 0.75, 0.5
# Fixed points around the face (the oval grown by this factor about its centre): the shape change
# warps the picture between them and the face outline, so a moved jaw line leaves no seam.
RING = 1.2
# Forehead points whose colour is this far from the cheeks' (in standard deviations, Lab) show
# hair, a hat or a fringe in the photo, not skin: there the target's own forehead stays.
NOT_SKIN = (3.0, 6.0)  # distance where the source starts to give way, where it is gone
SKIN_REFERENCE = np.array([50, 280, 4, 5, 195, 101, 330, 205, 425])  # cheeks and nose
MIRROR_MIN_SHARE = 0.02  # below this share of hidden face area a photo is not mirrored at all
VISIBILITY_RINGS = 4  # neighbourhood over which a point's visibility is judged
OCCLUSION_DEPTH = 0.02  # a point this far (face sizes) behind a surface in front of it is hidden
OCCLUSION_EDGE = 0.02  # barycentric margin: a point on a triangle's edge is not behind it
HIDDEN_WARNING = 0.2  # share of the face's 3-D area filled from the mirror that earns a warning


@dataclass(frozen=True, eq=False)
class SourceTexture:
    """The embedded engine's SourceFace payload."""

    levels: tuple[np.ndarray, ...]  # BGR uint8 crops of the face, largest first, each half the last
    mesh: np.ndarray  # (468 + ring, 2) float32 mesh and its surrounding ring in level-0 pixels
    xyz: np.ndarray  # (468, 3) float32 mesh with depth, in photo pixels (for shape transfer)
    triangles: np.ndarray  # (K, 3) int32 fixed topology over the mesh and its ring, every frame
    inner: np.ndarray  # (k, 3) int32 the triangles of the face itself (no ring point)
    mirror_weight: np.ndarray  # (468 + ring,) float32: 0 = own texture, 1 = the mirror image's
    visibility: np.ndarray  # (468,) float32 point_visibility() of the photo's mesh
    average: np.ndarray  # (468, 468) float32 neighbourhood() of its topology
    skin_weight: np.ndarray  # (468 + ring,) float32: 1 = skin, 0 = hair or a hat over the forehead
    symmetry: np.ndarray  # (468 + ring,) int64 symmetry.symmetry_map() extended to the ring
    mirrored: np.ndarray  # (K,) bool: triangle mostly textured from its mirror image
    hidden_fraction: float  # share of the face's 3-D area hidden in the photo
    eye_open: tuple[float, float]  # openness of the image-left and image-right eye
    mouth_open: float
    follow_weights: np.ndarray  # shape.follower_weights() of this face

    @property
    def texture(self) -> np.ndarray:
        return self.levels[0]

    def level_for(self, face_px: float) -> tuple[np.ndarray, np.ndarray]:
        """The smallest texture level still at least ``face_px`` across (no minification
        aliasing, no upsampling while avoidable), and the mesh in its pixels."""
        size0 = float(max(np.ptp(self.mesh[: m.NUM_POINTS], axis=0)))
        level = 0
        while level + 1 < len(self.levels) and size0 / 2 ** (level + 1) >= face_px:
            level += 1
        f = np.float32(0.5**level)
        return self.levels[level], (self.mesh + 0.5) * f - 0.5


def _crop_box(mesh: np.ndarray, shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = m.mesh_bbox(mesh)
    pad = margin * max(x2 - x1, y2 - y1)
    h, w = shape[:2]
    return (
        max(int(x1 - pad), 0),
        max(int(y1 - pad), 0),
        min(int(np.ceil(x2 + pad)) + 1, w),
        min(int(np.ceil(y2 + pad)) + 1, h),
    )


def texture_levels(image: np.ndarray, mesh: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The face crop at most TEXTURE_SIZE long and its halvings, and the mesh in level-0 pixels."""
    x0, y0, x1, y1 = _crop_box(mesh, image.shape, 0.05)
    crop = image[y0:y1, x0:x1]
    scale_xy = np.ones(2, dtype=np.float32)
    if max(crop.shape[:2]) > TEXTURE_SIZE:
        scale = TEXTURE_SIZE / max(crop.shape[:2])
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        scale_xy = np.array([size[0] / (x1 - x0), size[1] / (y1 - y0)], dtype=np.float32)
    # Pixel-index coordinates scale about pixel centres.
    tex_mesh = (mesh[:, :2] - np.array([x0, y0], np.float32) + 0.5) * scale_xy - 0.5
    levels = [np.ascontiguousarray(crop)]
    while max(levels[-1].shape[:2]) // 2 >= MIN_LEVEL_SIZE:
        prev = levels[-1]
        levels.append(
            cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA)
        )
    return tuple(levels), tex_mesh.astype(np.float32)


def foreshortening(xyz: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle: |n_z| / |n| (1 = facing the camera, 0 = edge-on) and its 3-D area."""
    # Written out rather than np.cross/np.linalg.norm: this runs per frame, several times faster.
    p = np.take(xyz.astype(np.float32), triangles, axis=0)
    a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    nx = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    ny = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    nz = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    area = np.sqrt(nx * nx + ny * ny + nz * nz)
    return np.abs(nz) / np.maximum(area, 1e-9), area / 2


def neighbourhood(triangles: np.ndarray, rings: int = VISIBILITY_RINGS) -> np.ndarray:
    """(468, 468) float32 averaging over ``rings`` rings of mesh neighbours (row-normalised), so
    that a feature (an eye in its socket) is judged with the surface around it. Once per upload."""
    adjacency = np.eye(m.NUM_POINTS, dtype=np.float64)
    for i in range(3):
        for j in range(3):
            adjacency[triangles[:, i], triangles[:, j]] = 1.0
    adjacency /= adjacency.sum(axis=1, keepdims=True)
    return np.linalg.matrix_power(adjacency, rings).astype(np.float32)


def point_visibility(
    xyz: np.ndarray, triangles: np.ndarray, average: np.ndarray, hidden: np.ndarray | None = None
) -> np.ndarray:
    """(468,) float32 how openly the view shows each point's neighbourhood: the area-weighted
    foreshortening of the triangles around it (1 = facing the camera, 0 = edge-on or, with
    ``hidden``, behind another part), averaged by ``average`` (neighbourhood())."""
    ratio, area = foreshortening(xyz, triangles)
    corners = triangles.ravel()
    weight = np.repeat(area, 3)
    value = np.repeat(ratio, 3)
    if hidden is not None:
        value = np.where(hidden[corners], 0.0, value)
    num = np.bincount(corners, value * weight, m.NUM_POINTS)
    seen = num / np.maximum(np.bincount(corners, weight, m.NUM_POINTS), 1e-9)
    return average @ seen.astype(np.float32)


def occluded(xyz: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(468,) bool: points another part of the face hides in the photo (the far eye and cheek
    behind the nose of a turned head). Foreshortening alone misses them: they face the camera,
    but what the photo shows there is the nose. Every point is tested against every triangle
    that does not touch it (once per upload)."""
    pts = xyz[: m.NUM_POINTS].astype(np.float64)
    size = float(max(np.ptp(pts[:, :2], axis=0))) or 1.0
    t = pts[triangles]  # (K, 3, 3)
    e1, e2 = t[:, 1, :2] - t[:, 0, :2], t[:, 2, :2] - t[:, 0, :2]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-9
    t, e1, e2, det, tris = t[ok], e1[ok], e2[ok], det[ok], triangles[ok]
    d = pts[:, None, :2] - t[None, :, 0, :2]  # (N, K, 2)
    l1 = (d[..., 0] * e2[:, 1] - d[..., 1] * e2[:, 0]) / det
    l2 = (e1[:, 0] * d[..., 1] - e1[:, 1] * d[..., 0]) / det
    inside = (l1 > OCCLUSION_EDGE) & (l2 > OCCLUSION_EDGE) & (l1 + l2 < 1 - OCCLUSION_EDGE)
    inside &= (tris[None, :, :] != np.arange(m.NUM_POINTS)[:, None, None]).all(axis=2)
    z = t[:, 0, 2] + l1 * (t[:, 1, 2] - t[:, 0, 2]) + l2 * (t[:, 2, 2] - t[:, 0, 2])
    front = np.where(inside, z, np.inf).min(axis=1)
    return pts[:, 2] > front + OCCLUSION_DEPTH * size


def mirror_for(seen: np.ndarray, needed: np.ndarray, symmetry: np.ndarray) -> np.ndarray:
    """(468,) float32 mirror weights: ``seen`` is the photo's point_visibility(), ``needed`` how
    well each point must be seen (the target's visibility, or the mirror image's in the photo);
    ``symmetry``: symmetry_map()."""
    relative = seen / np.maximum(np.minimum(needed, seen[symmetry]), 1e-6)
    return np.clip((MIRROR_START - relative) / (MIRROR_START - MIRROR_FULL), 0.0, 1.0).astype(np.float32)


def mirror_weights(
    seen: np.ndarray, xyz: np.ndarray, triangles: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per point, how much to texture it from its mirror image (0..1) for a target facing the
    camera; per triangle, whether it is mostly mirrored; and the share of the face's 3-D area
    that is hidden (mirror-textured). ``seen``: the photo's visibility of each point."""
    _, area = foreshortening(xyz, triangles)
    weight = mirror_for(seen, np.ones(m.NUM_POINTS), symmetry_map())
    per_triangle = weight[triangles].mean(axis=1)
    share = float((per_triangle * area).sum() / max(area.sum(), 1e-9))
    return weight, per_triangle > 0.5, share


def with_ring(mesh: np.ndarray) -> np.ndarray:
    """The (468, 2) mesh followed by a ring of points around it (the oval grown by RING)."""
    oval = mesh[m.FACE_OVAL, :2]
    centre = oval.mean(axis=0)
    return np.concatenate([mesh[:, :2], centre + (oval - centre) * RING]).astype(np.float32)


def ring_symmetry() -> np.ndarray:
    """symmetry_map() extended to the ring points, which mirror as their oval points do."""
    sym = symmetry_map()
    where = {int(p): i for i, p in enumerate(m.FACE_OVAL)}
    ring = np.array([m.NUM_POINTS + where[int(sym[p])] for p in m.FACE_OVAL])
    return np.concatenate([sym, ring])


def forehead_skin(smooth: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """(468,) float32: how much each point above the brows looks like the face's own skin (1)
    rather than hair or a hat (0); 1 everywhere below the brows. ``smooth``: the face's picture
    without fine detail (blurred, or a thumbnail), ``mesh`` in its pixels."""
    lab = cv2.cvtColor(smooth, cv2.COLOR_BGR2LAB)
    xy = mesh.astype(np.float32)
    colour = cv2.remap(lab, xy[:, :1], xy[:, 1:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    colour = colour[:, 0].astype(np.float32)
    ref = colour[SKIN_REFERENCE]
    spread = np.maximum(ref.std(axis=0), np.array([8.0, 4.0, 4.0], np.float32))
    distance = np.sqrt((((colour - ref.mean(axis=0)) / spread) ** 2).sum(axis=1))
    weight = np.clip((NOT_SKIN[1] - distance) / (NOT_SKIN[1] - NOT_SKIN[0]), 0.0, 1.0)
    # Only the forehead: eyes, brows, lips and shadows differ from the cheeks by nature.
    left, right = mesh[m.LEFT_EYE].mean(axis=0), mesh[m.RIGHT_EYE].mean(axis=0)
    axis = (right - left) / (np.linalg.norm(right - left) + 1e-6)
    up = np.array([axis[1], -axis[0]])
    if np.dot(mesh[m.NOSE_TIP] - (left + right) / 2, up) > 0:
        up = -up
    height = (mesh - (left + right) / 2) @ up
    brows = float(height[np.concatenate([m.LEFT_BROW, m.RIGHT_BROW])].max())
    return np.where(height > brows, weight, 1.0).astype(np.float32)


def _smooth(texture: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    size = float(max(np.ptp(mesh[: m.NUM_POINTS], axis=0)))
    return cv2.GaussianBlur(texture, (0, 0), max(1.0, 0.015 * size))


def prepare_texture(image: np.ndarray, xyz: np.ndarray) -> SourceTexture:
    levels, tex_mesh = texture_levels(image, xyz)
    tex_mesh = with_ring(tex_mesh)
    # The topology comes from the face seen from the front: triangulating the photo's own view of
    # a turned head joins points the nose hides to points far across the face, and those long
    # triangles fold and overlap on a target looking elsewhere (stripes across the cheek).
    triangles = m.triangulate(with_ring(frontal(xyz)[:, :2]))
    inner = np.ascontiguousarray(triangles[(triangles < m.NUM_POINTS).all(axis=1)])
    average = neighbourhood(inner)
    visibility = point_visibility(xyz, inner, average, occluded(xyz, inner))
    weight, mirrored_inner, share = mirror_weights(visibility, xyz, inner)
    if share < MIRROR_MIN_SHARE:
        # A photo facing the camera: specks of "hidden" surface are the mesh's depth noise, and
        # mirroring them would cost a second texture lookup on every frame for nothing visible.
        weight[:] = 0.0
        mirrored_inner[:] = False
    weight = np.concatenate([weight, np.zeros(len(m.FACE_OVAL), np.float32)])
    mirrored = np.zeros(len(triangles), bool)
    mirrored[(triangles < m.NUM_POINTS).all(axis=1)] = mirrored_inner
    return SourceTexture(
        levels=levels,
        mesh=tex_mesh,
        xyz=xyz.astype(np.float32),
        triangles=triangles,
        inner=inner,
        mirror_weight=weight,
        visibility=visibility,
        average=average,
        skin_weight=np.concatenate(
            [forehead_skin(_smooth(levels[0], tex_mesh), tex_mesh[: m.NUM_POINTS]), np.ones(len(m.FACE_OVAL))]
        ).astype(np.float32),
        symmetry=ring_symmetry(),
        mirrored=mirrored,
        hidden_fraction=share,
        eye_open=m.eye_openness(xyz[:, :2]),
        mouth_open=m.mouth_openness(xyz[:, :2]),
        follow_weights=follower_weights(xyz),
    )
