"""Cross-session batching through the real service: two aiortc clients stream to one server whose
neural engine (tiny contract models) batches swaps; faces from both sessions meet in one call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
from swaprtc.models.store import ModelStore
from swaprtc.pipeline.neural import NeuralEngine
from swaprtc.rtc.app import create_app
from swaprtc.settings import Settings

from tests.rtc_client import SwapClient, SyntheticCamera, serve_in_process
from tests.tiny_models import TinyStore, arcface_model, inswapper_model, make_emap

FACE = (slice(80, 165), slice(192, 260))  # inside the astronaut's face


def jpg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


async def test_two_sessions_share_batched_swaps(
    tmp_path: Path, model_store: ModelStore, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    models = {"w600k_r50": arcface_model(), "inswapper_128": inswapper_model("invert", emap=make_emap())}
    real = {n: model_store.ensure(n) for n in ("retinaface_mnet025", "face_landmark")}
    # A window long enough that the two sessions' frames (15 fps each) meet on a busy machine, and
    # a deadline above it, so waiting for the batch does not hide the faces.
    settings = Settings(batch_window_ms=150, swap_deadline_ms=2000, max_sessions=4)
    engine = NeuralEngine.from_store(TinyStore(tmp_path, models, real), settings)  # type: ignore[arg-type]
    app = create_app(settings, engine)
    try:
        async with serve_in_process(app) as base, SwapClient(base) as a, SwapClient(base) as b:
            for client in (a, b):
                await client.create_session()
                status, body = await client.upload_source(jpg(grace_bgr), "image/jpeg")
                assert status == 200, body
            await asyncio.gather(*(c.connect(SyntheticCamera(astronaut_bgr, 15)) for c in (a, b)))
            await asyncio.sleep(3.0)
            received = [list(a.received), list(b.received)]
    finally:
        assert engine.batching is not None
        engine.batching.close()
    for frames in received:
        assert len(frames) >= 5
        # The tiny swapper inverts the face: every session really got swapped frames back.
        face = frames[-1].image[FACE].astype(int)
        assert np.abs(face - astronaut_bgr[FACE].astype(int)).mean() > 30
    info = engine.describe()["runners"]
    assert isinstance(info, dict)
    batching = info["swapper"]["batching"]
    assert batching["largest_batch"] > 1, batching  # faces of both sessions in one model call
