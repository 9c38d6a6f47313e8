"""The "AI-generated" label: burned into every swapped frame a real aiortc client receives, absent
with ``--label off`` and in frames where nothing was swapped; also in ``swaprtc swap`` outputs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import cv2
import numpy as np
import pytest
from swaprtc.cli import build_parser
from swaprtc.label import Labeler, LabelStyle, render_label
from swaprtc.offline import swap_file
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.rtc.app import create_app
from swaprtc.settings import Settings, SettingsError
from swaprtc.types import SwapOptions

from tests.engine_doubles import PAINT_BGR, PaintEngine
from tests.label_check import carries_label, corner_distances, label_box, unchanged_corner
from tests.rtc_client import Received, SwapClient, SyntheticCamera, draw_frame_id, serve_in_process

if TYPE_CHECKING:
    import onnxruntime as ort


def jpg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def test_label_rendering() -> None:
    small = label_box((480, 640, 3))
    assert small.alpha.shape[0] == 22 and small.x + small.alpha.shape[1] < 640 and small.y < 20  # top right
    big = label_box((1080, 1920, 3), LabelStyle("bottom-left", 0.5))
    assert big.alpha.shape[0] == 49 and big.x < 40 and big.y + 49 > 1040
    assert float(big.alpha.max()) == pytest.approx(0.5)
    assert render_label(40, 30, LabelStyle()) is None  # no room: nothing drawn, nothing breaks
    frame = np.full((480, 640, 3), 200, np.uint8)
    labeled = Labeler(LabelStyle()).draw(frame.copy())
    assert carries_label(labeled, frame)
    assert np.array_equal(Labeler(LabelStyle(opacity=0.0)).draw(frame.copy()), frame)
    with pytest.raises(SettingsError):
        Settings(label_opacity=1.5)
    with pytest.raises(SettingsError):
        Settings(label_position="middle")
    args = build_parser().parse_args(["serve", "--label", "off", "--label-position", "bottom-left"])
    settings = Settings.from_env({"SWAPRTC_LABEL_OPACITY": "0.5"}).with_args(args)
    assert (settings.label, settings.label_position, settings.label_opacity) == (False, "bottom-left", 0.5)


def painted(received: Received, image: np.ndarray) -> bool:
    """A swapped frame: the face is the engine's magenta and the rest was not hidden (on a busy
    machine some frames go out with faces, or the whole frame, pixelated instead)."""
    face = received.image[100:150, 200:250].reshape(-1, 3).mean(axis=0)
    rest = np.abs(received.image[300:450, 40:460].astype(np.int16) - image[300:450, 40:460]).mean()
    return bool(np.abs(face - PAINT_BGR).max() < 40 and rest < 12)


def sent_for(received: Received, image: np.ndarray) -> np.ndarray:
    return draw_frame_id(image, received.frame_id)


async def frames_after(client: SwapClient, count: int, timeout: float = 15.0) -> list[Received]:
    start = len(client.received)
    deadline = time.monotonic() + timeout
    while len(client.received) < start + count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(client.received) >= start + count, "frames stopped arriving"
    return client.received[start:]


@pytest.mark.parametrize("label", [True, False])
async def test_received_frames_carry_the_label_only_when_swapped(
    retinaface_session: ort.InferenceSession, astronaut_bgr: np.ndarray, label: bool
) -> None:
    engine = PaintEngine(RetinaFaceDetector(retinaface_session))
    app = create_app(Settings(label=label), engine)
    async with serve_in_process(app) as base, SwapClient(base) as client:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/info") as resp:
            info = await resp.json()
        assert info["label"] == {
            "enabled": label,
            "position": "top-right",
            "opacity": 0.85,
            "text": "AI-generated",
        }
        assert isinstance(info["controls"], list)
        await client.create_session()
        await client.connect(SyntheticCamera(astronaut_bgr))
        # No source yet: nothing swapped, no label.
        for r in await frames_after(client, 10):
            assert unchanged_corner(r.image, sent_for(r, astronaut_bgr))
        assert (await client.upload_source(jpg(astronaut_bgr), "image/jpeg"))[0] == 200
        await frames_after(client, 15)
        # On a busy machine some frames go out hidden instead: collect swapped ones for a while.
        start, deadline = len(client.received), time.monotonic() + 30
        while time.monotonic() < deadline:
            swapped = [r for r in client.received[start:] if painted(r, astronaut_bgr)]
            if len(swapped) >= 8:
                break
            await asyncio.sleep(0.1)
        assert len(swapped) >= 8
        for r in swapped:
            sent = sent_for(r, astronaut_bgr)
            assert carries_label(r.image, sent) if label else unchanged_corner(r.image, sent), (
                corner_distances(r.image, sent)
            )


async def test_frames_without_a_swapped_face_carry_no_label(
    retinaface_session: ort.InferenceSession, astronaut_bgr: np.ndarray
) -> None:
    app = create_app(Settings(), PaintEngine(RetinaFaceDetector(retinaface_session)))
    empty = np.full_like(astronaut_bgr, 180)
    async with serve_in_process(app) as base, SwapClient(base) as client:
        await client.create_session()
        assert (await client.upload_source(jpg(astronaut_bgr), "image/jpeg"))[0] == 200
        await client.connect(SyntheticCamera(empty))
        for r in await frames_after(client, 20):
            assert unchanged_corner(r.image, sent_for(r, empty))


def test_swap_outputs_carry_the_label(
    retinaface_session: ort.InferenceSession, astronaut_bgr: np.ndarray, tmp_path: Path
) -> None:
    engine = PaintEngine(RetinaFaceDetector(retinaface_session))
    source, target = tmp_path / "source.png", tmp_path / "target.png"
    cv2.imwrite(str(source), astronaut_bgr)
    cv2.imwrite(str(target), astronaut_bgr)
    labeler = Labeler(LabelStyle())
    swap_file(source, target, tmp_path / "on.png", engine, SwapOptions(), progress=False, labeler=labeler)
    swap_file(source, target, tmp_path / "off.png", engine, SwapOptions(), progress=False)
    on, off = (cv2.imread(str(tmp_path / n)) for n in ("on.png", "off.png"))
    assert carries_label(on, astronaut_bgr) and unchanged_corner(off, astronaut_bgr)
    face_free = tmp_path / "empty.png"
    cv2.imwrite(str(face_free), np.full_like(astronaut_bgr, 180))
    swap_file(
        source, face_free, tmp_path / "none.png", engine, SwapOptions(), progress=False, labeler=labeler
    )
    assert unchanged_corner(cv2.imread(str(tmp_path / "none.png")), np.full_like(astronaut_bgr, 180))
