"""One face swapped by the embedded engine: the source's whole inner face warped by the target's
live mesh (moved towards the source's proportions), colour and light matched, blended in."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from swaprtc.embedded import mesh as m
from swaprtc.embedded.blend import composite, face_masks, keep_weights
from swaprtc.embedded.color import color_transfer, is_grey, to_grey
from swaprtc.embedded.shape import shape_offsets
from swaprtc.embedded.source import SourceTexture, forehead_skin, mirror_for, point_visibility, with_ring
from swaprtc.embedded.warp import OUTSIDE, Grid, coverage, face_grid, multi_maps, remap_coarse, signed_areas
from swaprtc.types import SwapOptions

LIGHT_CELLS = 32  # resolution of the colour/lighting estimate across the face box
# Lighting blur, in face widths: shading follows the target, features do not. At 0.12 the target's
# eye sockets and cheekbones came through (and gains up to the clamp made orange blotches there).
LIGHT_SIGMA = 0.3
TONE = 1.0  # how far the skin tone moves to the target's (color.color_transfer)
MIN_SHIFT_PX = 0.3  # shape offsets below this everywhere are not worth a second warp
# The shape change moves the face outline too (the jaw line is part of who someone is), warping
# the picture between it and the ring around the face so no seam shows. On the quality set: median
# id_transfer +0.015 with the other settings of 2026-12-01 (it makes the box to blend 1.4x larger).
CONTOUR = True
FEATHER = 0.06  # blend edge softness, in face sizes
FOREHEAD_CELLS = 32  # thumbnail size (long side) on which the target's forehead is judged


def _identity_outside(map_x: np.ndarray, map_y: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Coarse maps that leave pixels no triangle covers where they are."""
    miss = map_x <= OUTSIDE / 2
    ii, jj = np.nonzero(miss)
    map_x, map_y = map_x.copy(), map_y.copy()
    map_x[miss], map_y[miss] = jj.astype(np.float32) * step, ii.astype(np.float32) * step
    return map_x, map_y


def _mirror_blend(
    texture: np.ndarray,
    warped: np.ndarray,
    mirror_maps: tuple[np.ndarray, np.ndarray],
    weight: np.ndarray,
    grid: Grid,
) -> np.ndarray:
    """``warped`` blended towards the mirror image's texture by the coarse ``weight``, in place.

    Only the rectangle where the weight is not 0 is read from the mirror: outside it the blend
    gives ``warped`` back exactly, and a remap's pixel depends on its own map entry alone, so the
    result is the same as blending the whole box (usually the hidden side of the face only)."""
    w = grid.upsample(np.clip(weight, 0.0, 1.0))
    rows, cols = np.flatnonzero(w.any(axis=1)), np.flatnonzero(w.any(axis=0))
    if rows.size == 0:
        return warped
    inside = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    map_x, map_y = (grid.upsample(c)[inside] for c in mirror_maps)
    mirrored = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    part = warped[inside]
    # part + (mirrored - part) * w, rounded: in place, the same float32 steps.
    mix = mirrored.astype(np.float32)
    mix -= part
    mix *= w[inside][..., None]
    mix += part
    mix += np.float32(0.5)
    warped[inside] = mix.astype(np.uint8)
    return warped


@dataclass(frozen=True, eq=False)
class FaceLayer:
    """One face's rendered swap over its frame box: everything the blend needs, so that it can be
    composited on this frame or, moved, on the frames after it (engine.py's keyframe reuse)."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels (exclusive ends)
    under: np.ndarray  # the target's box the face is blended over (moved with the shape change)
    warped: np.ndarray  # the source's face warped onto the target, uint8
    gain: np.ndarray  # colour/light match: min(warped * gain + offset, cap)
    offset: np.ndarray
    cap: np.ndarray
    alpha: np.ndarray  # (h, w) float32, how much of the face to show
    # With a change of shape: the (h, w) maps (box pixels) that moved the target's own picture
    # into ``under``, so a later frame's picture can be moved alike.
    reshape: tuple[np.ndarray, np.ndarray] | None = None


def render_face(
    frame: np.ndarray,
    mesh: np.ndarray,
    depth: np.ndarray | None,
    source: SourceTexture,
    options: SwapOptions,
    max_cells: int,
    timings: dict[str, float],
) -> FaceLayer | None:
    """Warp and colour-match the source onto one target mesh. None when the face is too small
    or off-frame."""
    start = time.perf_counter()
    # Strength scales everything the swap does, the change of shape included.
    amount = float(np.clip(options.shape, 0.0, 1.0) * np.clip(options.strength, 0.0, 1.0))
    offsets = None
    if amount > 0 and depth is not None:
        offsets = shape_offsets(
            np.column_stack([mesh, depth]), source.xyz, amount, source.follow_weights, CONTOUR
        )
        if float(np.abs(offsets).max()) <= MIN_SHIFT_PX:
            offsets = None
    ringed = with_ring(mesh)
    # With a change of shape the picture between the face and the ring is warped too.
    grid = face_grid(
        ringed[m.NUM_POINTS :] if offsets is not None and CONTOUR else mesh[m.FACE_OVAL],
        frame.shape,
        max_cells,
    )
    if grid is None:
        return None
    target_box = frame[grid.y0 : grid.y1, grid.x0 : grid.x1]
    grid_mesh = grid.to_grid(ringed)
    face_px = float(max(np.ptp(mesh[m.FACE_OVAL], axis=0)))
    texture, tex_mesh = source.level_for(face_px)
    dst_grid = grid_mesh
    if offsets is not None:
        dst_grid = (
            grid_mesh + np.concatenate([offsets, np.zeros((len(m.FACE_OVAL), 2), np.float32)]) / grid.step
        )
    # The ring's triangles only matter when the picture around the face is warped.
    triangles = source.triangles if offsets is not None and CONTOUR else source.inner
    mirror_weight = source.mirror_weight
    if depth is not None and mirror_weight.max() > 0:  # (a photo facing the camera never mirrors)
        # A part the photo shows foreshortened is only stretched when the target shows it more
        # openly: a head turned the same way as the photo's keeps its own texture.
        seen = point_visibility(np.column_stack([mesh, depth]), source.inner, source.average)
        mirrored = mirror_for(source.visibility, seen, source.symmetry[: m.NUM_POINTS])
        mirror_weight = np.concatenate([mirrored, mirror_weight[m.NUM_POINTS :]])
    mirror = bool(mirror_weight.max() > 0)
    # The target's own fringe, hat or hairline over its forehead stays too: judged on a thumbnail
    # of its box (a colour far from its cheeks' is not skin), as the photo's was at upload.
    scale = FOREHEAD_CELLS / max(grid.size)
    thumb = cv2.resize(target_box, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    at = (mesh - np.array([grid.x0, grid.y0], np.float32) + 0.5) * np.float32(scale) - 0.5
    skin_weight = source.skin_weight.copy()
    skin_weight[: m.NUM_POINTS] *= forehead_skin(thumb, at)
    # Per-point weights are interpolated like coordinates: (mirror weight, forehead skin weight).
    weights_at = np.column_stack([mirror_weight, skin_weight])
    sources: list[tuple[np.ndarray, np.ndarray | None]] = [(tex_mesh, None), (weights_at, None)]
    facing = None
    if mirror:
        # Hidden parts read the mirror image: the same map through the symmetry.
        sources.append((tex_mesh[source.symmetry], None))
        # A triangle the photo shows from behind (folded over) is drawn from its mirror image when
        # that faces the target (a mirror image has the opposite orientation), instead of left
        # as a hole; its own texture is meaningless there, so it is mirrored completely.
        area = signed_areas(dst_grid, triangles)
        facing = area * signed_areas(tex_mesh, triangles) > 0
        rescued = ~facing & (area * signed_areas(tex_mesh[source.symmetry], triangles) < 0)
        if rescued.any():
            facing |= rescued
            corners = weights_at[triangles]  # per triangle corner, so a rescued one can differ
            corners[rescued, :, 0] = 1.0
            sources[1] = (corners.reshape(-1, 2), np.arange(corners.shape[0] * 3).reshape(-1, 3))
    if offsets is not None:
        # The target's own picture (eyes and mouth kept while closing or open, the jaw line) moves
        # with the shape: the same rasterisation also maps the reshaped box back into the target's.
        sources.append((grid_mesh * np.float32(grid.step), None))
    maps = multi_maps(dst_grid, tex_mesh, triangles, grid.shape, sources, facing)
    map_x, map_y = maps[0]
    covered = coverage(map_x)
    warped = remap_coarse(texture, map_x, map_y, grid)
    weights = maps[1]
    # Uncovered points read OUTSIDE: clipped to 0 (coverage removes them anyway).
    skin = np.clip(weights[1], 0.0, 1.0)
    if mirror:
        warped = _mirror_blend(texture, warped, maps[2], weights[0], grid)
    reshape = None
    if offsets is not None:
        coarse_x, coarse_y = _identity_outside(*maps[-1], grid.step)
        # Upsampled once: the keyframe's reuse (reuse.py) moves later frames by the same maps.
        reshape = (grid.upsample(coarse_x), grid.upsample(coarse_y))
        target_box = cv2.remap(target_box, *reshape, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        grid_mesh = dst_grid
    grid_mesh = grid_mesh[: m.NUM_POINTS]
    t_warp = time.perf_counter()

    rows, cols = grid.shape
    face_cells = float(max(np.ptp(grid_mesh[m.FACE_OVAL], axis=0)))
    feather = max(1.0, FEATHER * face_cells)
    keep = keep_weights(
        grid_mesh, source.eye_open, source.mouth_open, options.mouth_mask, options.mouth_mask_padding
    )
    masks = face_masks(grid_mesh, (rows, cols), feather, keep, options.mouth_mask_blur)
    # Texture the source photo cannot give (culled folds) is left to the target's own skin.
    covered = cv2.erode(covered, np.ones((3, 3), np.uint8))
    covered = cv2.GaussianBlur(covered, (0, 0), max(feather / 3.0, 0.5))
    # Colour is low-frequency: estimate it on a ~LIGHT_CELLS-wide thumbnail of the face box.
    width, height = grid.size
    k = max(width, height) / LIGHT_CELLS
    small = (max(2, round(width / k)), max(2, round(height / k)))
    t_small = cv2.resize(target_box, small, interpolation=cv2.INTER_AREA)
    skin_small = cv2.resize(masks.skin * covered * skin, small, interpolation=cv2.INTER_AREA)
    grey = is_grey(t_small, skin_small)
    if grey:
        warped = to_grey(warped)
    transfer = color_transfer(
        t_small,
        cv2.resize(warped, small, interpolation=cv2.INTER_AREA),
        skin_small,
        cv2.resize(masks.boundary, small, interpolation=cv2.INTER_AREA),
        LIGHT_SIGMA * face_cells * grid.step / k,
        grey,
        TONE,
    )
    gain = cv2.resize(transfer.gain, grid.size, interpolation=cv2.INTER_LINEAR)
    offset = cv2.resize(transfer.offset, grid.size, interpolation=cv2.INTER_LINEAR)
    t_color = time.perf_counter()

    strength = float(np.clip(options.strength, 0.0, 1.0))
    alpha = grid.upsample(masks.alpha * covered * skin * np.float32(strength))
    timings["warp"] += (t_warp - start) * 1000
    timings["color"] += (t_color - t_warp) * 1000
    timings["blend"] += (time.perf_counter() - t_color) * 1000  # the alpha is blend work
    return FaceLayer(
        (grid.x0, grid.y0, grid.x1, grid.y1),
        target_box,
        warped,
        gain,
        offset,
        transfer.cap,
        alpha,
        reshape,
    )


def composite_layer(out: np.ndarray, layer: FaceLayer, timings: dict[str, float]) -> None:
    """Blend a face layer into ``out`` where it was rendered; only its box is written."""
    start = time.perf_counter()
    x0, y0, x1, y1 = layer.box
    out[y0:y1, x0:x1] = composite(layer.under, layer.warped, layer.gain, layer.offset, layer.cap, layer.alpha)
    timings["blend"] += (time.perf_counter() - start) * 1000


def swap_face(
    frame: np.ndarray,
    out: np.ndarray,
    mesh: np.ndarray,
    depth: np.ndarray | None,
    source: SourceTexture,
    options: SwapOptions,
    max_cells: int,
    timings: dict[str, float],
) -> bool:
    """Warp, colour-match and blend the source onto one target mesh, writing into ``out``.

    Only ``out``'s face box is written. Returns False when the face is too small or off-frame.
    """
    layer = render_face(frame, mesh, depth, source, options, max_cells, timings)
    if layer is None:
        return False
    composite_layer(out, layer, timings)
    return True
