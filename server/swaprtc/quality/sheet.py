"""Contact sheet: one tile per pair, source | target | each method's output."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CELL = 112
LABEL_H = 16


def _label(width: int, text: str) -> np.ndarray:
    strip = np.full((LABEL_H, width, 3), 255, np.uint8)
    cv2.putText(
        strip, text[: width // 6], (3, LABEL_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA
    )
    return strip


def _centre(image: np.ndarray, keep: float = 0.62) -> np.ndarray:
    """The middle of a quality-set image, where its face is (photos.FACE_FRACTION of the side)."""
    h, w = image.shape[:2]
    side = int(min(h, w) * keep)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return image[y0 : y0 + side, x0 : x0 + side]


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]], headers: Sequence[str], columns: int = 2
) -> np.ndarray:
    """``rows``: (caption, images) with one image per header; tiles laid out ``columns`` wide."""
    tiles = []
    for caption, images in rows:
        cells = [cv2.resize(_centre(img), (CELL, CELL), interpolation=cv2.INTER_AREA) for img in images]
        body = np.hstack(cells)
        tiles.append(np.vstack([_label(body.shape[1], caption), body]))
    if not tiles:
        return np.full((LABEL_H, CELL, 3), 255, np.uint8)
    head_cells = [_label(CELL, h) for h in headers]
    head = np.hstack(head_cells)
    tile_w = tiles[0].shape[1]
    blank = np.full_like(tiles[0], 255)
    grid_rows = []
    for start in range(0, len(tiles), columns):
        chunk = list(tiles[start : start + columns])
        chunk += [blank] * (columns - len(chunk))
        grid_rows.append(np.hstack([np.pad(t, ((0, 0), (0, 6), (0, 0)), constant_values=255) for t in chunk]))
    header = np.hstack([np.pad(head, ((0, 0), (0, 6), (0, 0)), constant_values=255)] * columns)
    sheet = np.vstack([header, *grid_rows])
    assert sheet.shape[1] == columns * (tile_w + 6)
    return sheet
