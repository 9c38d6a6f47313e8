"""``swaprtc bench --suite quality``: every ordered pair of the quality set swapped by each
method, judged by dlib's face recognizer (see score.py for the figures)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swaprtc.embedded import mesh as m
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.quality.photos import QualityPhoto
from swaprtc.quality.recognizer import DlibRecognizer
from swaprtc.quality.reference import legacy_swap, legacy_texture, naive_paste
from swaprtc.quality.score import PairScore, distance, summarise
from swaprtc.quality.sheet import contact_sheet
from swaprtc.types import SourceFace, SwapOptions

Swap = Callable[[QualityPhoto, QualityPhoto], np.ndarray]


@dataclass
class Methods:
    """The swaps compared, each a function (source photo, target photo) -> output image. Sources
    are prepared once per photo and cached."""

    engine: EmbeddedEngine
    options: SwapOptions

    def __post_init__(self) -> None:
        self._sources: dict[str, SourceFace] = {}

    def _source(self, photo: QualityPhoto) -> SourceFace:
        if photo.name not in self._sources:
            self._sources[photo.name] = self.engine.prepare_source(photo.image)
        return self._sources[photo.name]

    def _target_mesh(self, photo: QualityPhoto) -> np.ndarray | None:
        faces = self.engine.open_stream().tracker.update(photo.image, False).faces
        return faces[0].mesh if faces else None

    def unchanged(self, src: QualityPhoto, tgt: QualityPhoto) -> np.ndarray:
        return tgt.image

    def legacy(self, src: QualityPhoto, tgt: QualityPhoto) -> np.ndarray:
        source = self._source(src)
        mesh = self._target_mesh(tgt)
        if mesh is None or source.face.mesh is None:
            return tgt.image
        texture, tex_mesh = legacy_texture(src.image, source.face.mesh)
        return legacy_swap(tgt.image, mesh, texture, tex_mesh, m.triangulate(tex_mesh))

    def naive(self, src: QualityPhoto, tgt: QualityPhoto) -> np.ndarray:
        mesh = self._target_mesh(tgt)
        if mesh is None:
            return tgt.image
        return naive_paste(src.image, self._source(src).face.kps, tgt.image, mesh)

    def embedded(self, src: QualityPhoto, tgt: QualityPhoto) -> np.ndarray:
        return self.engine.open_stream().process(tgt.image, self._source(src), self.options).frame

    def table(self) -> dict[str, Swap]:
        return {
            "unchanged": self.unchanged,
            "naive_paste": self.naive,
            "embedded_before": self.legacy,
            "embedded": self.embedded,
        }


def ordered_pairs(photos: Sequence[QualityPhoto], limit: int | None = None) -> list[tuple[int, int]]:
    pairs = list(itertools.permutations(range(len(photos)), 2))
    return pairs if limit is None else pairs[:limit]


def run_quality(
    photos: Sequence[QualityPhoto],
    methods: dict[str, Swap],
    recognizer: DlibRecognizer,
    *,
    max_pairs: int | None = None,
    sheet_path: Path | None = None,
    sheet_public_only: bool = True,
) -> dict[str, Any]:
    """The report: per method the summary figures, per pair the distances, and (optionally) a
    contact sheet PNG of the pairs whose photos are all public domain."""
    described = {p.name: recognizer.describe(p.image) for p in photos}
    missing = [n for n, d in described.items() if d is None]
    if missing:
        raise ValueError(f"dlib finds no face in quality photo(s) {missing}")
    rows: list[dict[str, Any]] = []
    scores: dict[str, list[PairScore | None]] = {name: [] for name in methods}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    sheet_rows: list[tuple[str, list[np.ndarray]]] = []
    for si, ti in ordered_pairs(photos, max_pairs):
        src, tgt = photos[si], photos[ti]
        d_src, d_tgt = described[src.name], described[tgt.name]
        assert d_src is not None and d_tgt is not None
        row: dict[str, Any] = {
            "source": src.name,
            "target": tgt.name,
            "d_src_tgt": round(distance(d_src, d_tgt), 4),
        }
        outputs = []
        for name, swap in methods.items():
            start = time.perf_counter()
            out = swap(src, tgt)
            seconds[name] += time.perf_counter() - start
            outputs.append(out)
            d_out = recognizer.describe(out, _centre_box(out))
            if d_out is None:
                scores[name].append(None)
                row[name] = None
                continue
            score = PairScore(distance(d_src, d_tgt), distance(d_out, d_src), distance(d_out, d_tgt))
            scores[name].append(score)
            row[name] = score.row()
        rows.append(row)
        if sheet_path is not None and ((src.public_domain and tgt.public_domain) or not sheet_public_only):
            shown = [out for name, out in zip(methods, outputs, strict=True) if name != "unchanged"]
            sheet_rows.append((f"{src.name} -> {tgt.name}", [src.image, tgt.image, *shown]))
    report: dict[str, Any] = {
        "recognizer": f"dlib_face_recognition_resnet_model_v1 ({recognizer.version})",
        "photos": [{"name": p.name, "origin": p.origin} for p in photos],
        "pairs": len(rows),
        "methods": {
            name: {**summarise(s), "seconds_per_pair": round(seconds[name] / max(len(rows), 1), 4)}
            for name, s in scores.items()
        },
        "rows": rows,
    }
    if sheet_path is not None:
        # "unchanged" is the target again: not worth a column.
        sheet = contact_sheet(sheet_rows, ["source", "target", *(n for n in methods if n != "unchanged")])
        sheet_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sheet_path), sheet)
        report["contact_sheet"] = {"path": str(sheet_path), "pairs": len(sheet_rows)}
    return report


def _centre_box(image: np.ndarray) -> np.ndarray:
    """Quality-set images have the face centred at a known size (photos.FACE_FRACTION)."""
    from swaprtc.quality.photos import FACE_FRACTION

    h, w = image.shape[:2]
    half = FACE_FRACTION * min(h, w) / 2
    return np.array([w / 2 - half, h / 2 - half, w / 2 + half, h / 2 + half], np.float32)
