"""Reference swaps the quality benchmark compares the embedded engine with.

``legacy_swap`` is the embedded engine as it was before issue 10 (texture capped at 256 px, the
target's eyes and mouth kept as fixed holes, a lighting gain of up to 4×), frozen here so every
run measures it side by side with today's engine. ``naive_paste`` is the issue's other reference:
the whole source face moved by a 5-point similarity and pasted with cv2.seamlessClone.
"""

from __future__ import annotations

import cv2
import numpy as np

from swaprtc.embedded import mesh as m
from swaprtc.embedded.blend import SHIFT, fixed_point, scaled_polygon
from swaprtc.embedded.warp import face_grid, warp_texture

LEGACY_TEXTURE = 256


def _legacy_masks(
    grid_mesh: np.ndarray, shape: tuple[int, int], feather: float
) -> tuple[np.ndarray, np.ndarray]:
    oval = np.zeros(shape, np.uint8)
    outline = scaled_polygon(m.blend_outline(grid_mesh), 1.0, -1.2 * feather)
    cv2.fillPoly(oval, [fixed_point(outline)], 255, lineType=cv2.LINE_AA, shift=SHIFT)
    holes = np.zeros(shape, np.uint8)
    pad = 0.6 * feather
    for ring in (m.LEFT_EYE, m.RIGHT_EYE, m.INNER_LIPS):
        cv2.fillPoly(
            holes,
            [fixed_point(scaled_polygon(grid_mesh[ring], 1.15, pad))],
            255,
            lineType=cv2.LINE_AA,
            shift=SHIFT,
        )
    soft_oval = cv2.GaussianBlur(oval, (0, 0), max(feather / 2.0, 0.5)).astype(np.float32) / 255
    soft_holes = cv2.GaussianBlur(holes, (0, 0), max(pad / 2.5, 0.5)).astype(np.float32) / 255
    return soft_oval * (1.0 - soft_holes), ((oval > 127) & (holes < 128)).astype(np.float32)


def _masked_blur(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    num = cv2.GaussianBlur(image * mask[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None]
    return num / np.maximum(den, 1e-3)


def legacy_texture(image: np.ndarray, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face crop (5 % margin) at most LEGACY_TEXTURE px long, and the mesh in its pixels."""
    x1, y1, x2, y2 = m.mesh_bbox(mesh)
    pad = 0.05 * max(x2 - x1, y2 - y1)
    h, w = image.shape[:2]
    x0, y0 = max(int(x1 - pad), 0), max(int(y1 - pad), 0)
    xe, ye = min(int(np.ceil(x2 + pad)) + 1, w), min(int(np.ceil(y2 + pad)) + 1, h)
    crop = image[y0:ye, x0:xe]
    scale = min(1.0, LEGACY_TEXTURE / max(crop.shape[:2]))
    scale_xy = np.ones(2, np.float32)
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        scale_xy = np.array([size[0] / (xe - x0), size[1] / (ye - y0)], np.float32)
    tex_mesh = (mesh - np.array([x0, y0], np.float32) + 0.5) * scale_xy - 0.5
    return np.ascontiguousarray(crop), tex_mesh.astype(np.float32)


def legacy_swap(
    frame: np.ndarray, mesh: np.ndarray, texture: np.ndarray, tex_mesh: np.ndarray, triangles: np.ndarray
) -> np.ndarray:
    """One face swapped the pre-issue-10 way; returns a new frame."""
    out = frame.copy()
    grid = face_grid(mesh[m.FACE_OVAL], frame.shape, 64)
    if grid is None:
        return out
    warped = warp_texture(texture, tex_mesh, mesh, triangles, grid)
    target_box = frame[grid.y0 : grid.y1, grid.x0 : grid.x1]
    grid_mesh = grid.to_grid(mesh)
    face_cells = float(max(np.ptp(grid_mesh[m.FACE_OVAL], axis=0)))
    blend_c, skin_c = _legacy_masks(grid_mesh, grid.shape, max(1.0, 0.06 * face_cells))
    width, height = grid.size
    k = max(width, height) / 32
    small = (max(2, round(width / k)), max(2, round(height / k)))
    skin = cv2.resize(skin_c, small, interpolation=cv2.INTER_AREA)
    gain_small = np.ones((small[1], small[0], 3), np.float32)
    if skin.sum() >= 4:
        sigma = 0.12 * face_cells * grid.step / k
        t = _masked_blur(
            cv2.resize(target_box, small, interpolation=cv2.INTER_AREA).astype(np.float32), skin, sigma
        )
        s = _masked_blur(
            cv2.resize(warped, small, interpolation=cv2.INTER_AREA).astype(np.float32), skin, sigma
        )
        gain_small = np.clip((t + 4.0) / (s + 4.0), 0.25, 4.0).astype(np.float32)
    gain = cv2.resize(gain_small, grid.size, interpolation=cv2.INTER_LINEAR)
    a = grid.upsample(blend_c)[..., None]
    box = target_box.astype(np.float32) * (1.0 - a) + warped.astype(np.float32) * (gain * a)
    out[grid.y0 : grid.y1, grid.x0 : grid.x1] = np.clip(box + 0.5, 0, 255).astype(np.uint8)
    return out


def naive_paste(
    source: np.ndarray, source_kps: np.ndarray, target: np.ndarray, target_mesh: np.ndarray
) -> np.ndarray:
    """The whole source image moved by the 5-point similarity onto the target and seamless-cloned
    inside the target's face oval."""
    affine, _ = cv2.estimateAffinePartial2D(source_kps, m.five_points(target_mesh), method=cv2.LMEDS)
    if affine is None:
        return target.copy()
    h, w = target.shape[:2]
    moved = cv2.warpAffine(source, affine, (w, h), borderMode=cv2.BORDER_REFLECT101)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(m.blend_outline(target_mesh)).astype(np.int32)], 255)
    mask[:1], mask[-1:], mask[:, :1], mask[:, -1:] = 0, 0, 0, 0
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return target.copy()
    centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    return cv2.seamlessClone(moved, target, mask, centre, cv2.NORMAL_CLONE)
