"""``swaprtc bench`` runs its suites end to end and reports JSON (speed itself is not asserted:
timings belong in benchmarks, not tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from swaprtc.benchmarks.capacity import camera_picture
from swaprtc.benchmarks.session_cost import THREAD_ROLES, checkout, code_variants
from swaprtc.cli import main
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.rtc.track import InferencePool
from swaprtc.settings import Settings

if TYPE_CHECKING:
    import onnxruntime as ort
    from swaprtc.models.store import ModelStore


def test_bench_reports_json_for_each_suite(
    model_store: ModelStore, face_landmark_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--suite",
            "frame_io,paste,controls,embedded",
            "--frames",
            "3",
            "--models-dir",
            str(model_store.models_dir),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    results = printed["results"]
    assert set(results) == {"frame_io", "paste", "controls", "embedded"}
    for label in ("480p", "720p", "1080p"):
        controls = results["controls"][label]
        assert {
            k: controls[k]["n"] for k in ("paste_128", "label", "color_correction", "mouth_mask")
        } == dict.fromkeys(("paste_128", "label", "color_correction", "mouth_mask"), 3)
        assert set(controls["per_paste"]) == {"label", "color_correction", "mouth_mask"}
    for label in ("720p", "1080p"):
        assert results["frame_io"][label]["i420_from_numpy_buffer"]["n"] == 3
        paste = results["paste"][label]
        ours, reference = paste["crop_region"]["median_ms"], paste["insightface_reference"]["median_ms"]
        assert ours > 0 and reference > 0
        # The ratio is the reference's median over ours (rounded to 0.1), not the other way round.
        assert paste["speedup"] == pytest.approx(reference / ours, abs=0.051)
    embedded = results["embedded"]
    assert embedded["swapped_frames"] == embedded["frames"] > 0
    assert set(embedded["median_ms"]) >= {"landmarks", "warp", "color", "blend", "total"}
    # A full swap of every frame against the settings' cadence, interleaved on the same frames.
    cadence = embedded["cadence"]
    every, cadenced = cadence["every_frame"], cadence["cadenced"]
    assert every["swap_every"] == 1 and cadenced["swap_every"] == Settings().swap_every > 1
    assert every["keyframes"] == 0 and every["mesh_calls"] >= cadence["frames"]
    assert cadenced["keyframes"] > 0 and cadenced["mesh_calls"] < every["mesh_calls"]
    assert cadence["reuse_error"]["reused_frames"] > 0
    assert cadence["reuse_error"]["vs_full_swap_at_same_mesh"]["mean"] > 0
    assert cadenced["cpu_ms"]["mean"] > 0 and every["cpu_ms"]["p90"] > 0
    # The same comparison on a drifting ("cadence"), a still and a talking face, as many frames each.
    streams = embedded["streams"]
    assert set(streams) == {"drift", "still", "talking"} and streams["drift"] == cadence
    for name, run in streams.items():
        assert run["frames"] == cadence["frames"], name
        assert run["cadenced"]["keyframes"] > 0 and run["every_frame"]["mesh_calls"] >= run["frames"], name
    side = embedded["side_by_side"]
    assert side["frames"] > 0 and side["ratio"] > 0
    assert side["cpu_ms_median"]["today"] > 0 and side["cpu_ms_median"]["before_issue_10"] > 0


def test_bench_rejects_unknown_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--suite", "nope"]) == 2
    assert "unknown suite" in capsys.readouterr().err


def test_session_cost_measures_every_step(
    model_store: ModelStore,
    face_landmark_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    converted: list[int] = []
    to_bgr = InferencePool.to_bgr

    def counted(pool: InferencePool, frame: Any) -> Any:
        converted.append(1)
        return to_bgr(pool, frame)

    # The step table times the server's own conversion (a kept swscale context), not
    # ``frame.to_ndarray(format=...)``, which builds a new one per frame (~4x the CPU).
    monkeypatch.setattr(InferencePool, "to_bgr", counted)
    args = ["bench", "--suite", "session_cost", "--resolution", "480p", "--frames", "10"]
    args += ["--rounds", "1", "--step-s", "2"]
    assert main([*args, "--models-dir", str(model_store.models_dir)]) == 0
    assert len(converted) >= 2 * 20  # every frame of the VP8 and the H264 session
    cost = json.loads(capsys.readouterr().out)["results"]["session_cost"]["480p"]
    steps = {"rtp_in", "decode", "to_bgr", "engine", "to_i420", "encode", "rtp_out"}
    for codec in ("vp8", "h264"):
        for label in ("aiortc", "before", "after"):
            run = cost[codec][label]
            assert set(run["ms_per_frame"]) == steps and run["ms_per_frame"]["engine"] > 0
            # Per-session CPU from the mean per step (the engine's keyframes make medians undercount).
            assert run["cores_at_30fps"] == pytest.approx(run["total_mean_ms"] * 0.03, abs=0.002)
            assert set(run["mean_ms_per_frame"]) == steps
            # Each encoder's output decoded again is still the picture it was given.
            assert run["psnr_db"] > 30 and 0.9 < run["ssim"] <= 1.0, run
        assert cost[codec]["decode_threads"]["one_ms"] > 0
    # The steps before the encoder are shared, measured once for every encoder.
    assert cost["vp8"]["before"]["ms_per_frame"]["engine"] == cost["vp8"]["after"]["ms_per_frame"]["engine"]
    # The session runs the engine with the settings' keyframe cadence.
    assert 0 < cost["vp8"]["engine"]["keyframes"] < cost["vp8"]["frames"]
    # The conversions around the engine and the alternatives measured for them.
    conversions = cost["conversions"]
    assert len(conversions["ms_per_frame"]) == 4
    assert all(ms > 0 for ms in conversions["ms_per_frame"].values())
    assert conversions["regions"] and conversions["roundtrip"]["max_levels"] > 1
    # The whole-process figure: a real server with a real client, before and after, frames received.
    whole = cost["whole_process"]
    assert whole["env"]["before"] != whole["env"]["after"]
    assert whole["camera"] == "drift"  # its client's camera unless --camera says otherwise
    for label in ("before", "after"):
        # The client streams at 30 fps: the server keeps up (half of that even on a busy 2-core box).
        assert whole[label]["server_ms_per_frame"] > 0 and whole[label]["min_fps"] >= 15, whole
        (run,) = whole[label]["runs"]
        # py-spy (dev extra) names the threads: the event loop and the swap job both took CPU.
        roles = run["threads_ms_per_frame"]
        assert roles[THREAD_ROLES[0][1]] > 0 and roles[THREAD_ROLES[1][1]] > 0, roles


def test_session_cost_baseline_is_a_commits_server_code(tmp_path: Path) -> None:
    """``--baseline REF``: the whole-process 'before' servers import REF's package (its server/
    tree and model manifest, extracted), the 'after' servers this checkout's."""
    repo = Path(__file__).resolve().parent.parent
    with checkout(repo, "HEAD") as server:
        assert (server / "swaprtc" / "__init__.py").is_file()
        assert (server.parent / "models" / "manifest.json").is_file()
        variants = code_variants(Settings(), server)
        assert variants["before"]["PYTHONPATH"].split(os.pathsep)[0] == str(server)
        assert "PYTHONPATH" not in variants["after"]
        assert variants["before"]["SWAPRTC_PIXEL_THREADS"] == variants["after"]["SWAPRTC_PIXEL_THREADS"]
        found = subprocess.run(
            [sys.executable, "-c", "import swaprtc; print(swaprtc.__file__)"],
            env={**os.environ, **variants["before"]},
            capture_output=True,
            text=True,
            check=True,
        )
        assert found.stdout.strip() == str(server / "swaprtc" / "__init__.py")
    assert not server.exists()  # the extracted tree is removed afterwards


def test_capacity_suite_runs_real_sessions_against_two_workers(
    model_store: ModelStore, face_landmark_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One ramp step (one real client process, streaming the talking face) against ``serve
    --workers 2``: the report has the session's fps and latency, server and client CPU apart, and
    each process's memory."""
    args = ["bench", "--suite", "capacity", "--workers", "2", "--resolution", "480p"]
    args += ["--max-sessions", "1", "--step-s", "2", "--models-dir", str(model_store.models_dir)]
    assert main([*args, "--camera", "talking"]) == 0
    capacity = json.loads(capsys.readouterr().out)["results"]["capacity"]
    assert "skipped" not in capacity, capacity
    (run,) = capacity["runs"]
    (step,) = run["steps"]
    assert run["workers"] == "2" and step["sessions"] == 1
    assert run["camera"] == capacity["summary"][0]["camera"] == "talking" and capacity["cameras"] == [
        "talking"
    ]
    assert step["per_session"][0]["fps"] > 0 and step["latency_p50_ms"] > 0
    assert step["server_cores"] > 0 and step["client_cores"] > 0
    assert set(step["rss_mb"]) == {"supervisor", "worker-0", "worker-1"}
    assert all(mb > 20 for mb in step["rss_mb"].values())


def test_bench_refuses_an_unknown_camera(capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in ``--camera`` is reported before any server starts; session_cost takes one camera."""
    assert main(["bench", "--suite", "capacity,session_cost", "--camera", "still,wobble"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    for suite in ("capacity", "session_cost"):
        assert (
            "unknown camera(s) ['wobble']; choose from ['still', 'drift', 'talking']"
            in results[suite]["skipped"]
        )
    assert main(["bench", "--suite", "session_cost", "--camera", "still,talking"]) == 0
    skipped = json.loads(capsys.readouterr().out)["results"]["session_cost"]["skipped"]
    assert "session_cost streams one camera" in skipped


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_capacity_camera_shows_the_whole_face(
    retinaface_session: ort.InferenceSession, obama_bgr: np.ndarray, size: tuple[int, int]
) -> None:
    """The capacity and session_cost clients stream a whole face, as a webcam frames a person: a
    centred crop of the tall portrait cut the head off at the eyes (a cheaper, unreal session)."""
    picture = camera_picture(obama_bgr, size)
    assert picture.shape == (size[1], size[0], 3)
    faces = RetinaFaceDetector(retinaface_session).detect(picture)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].bbox
    w, h = size
    # The head with room around it (the detector's box starts at the brow, the hair is above it).
    assert x1 > 0.05 * w and x2 < 0.95 * w and y1 > 0.1 * h and y2 < 0.9 * h, faces[0].bbox
    assert (x2 - x1) > 0.2 * w  # a face a webcam user shows, not a thumbnail


async def test_capacity_clients_replay_a_pre_encoded_loop(obama_bgr: np.ndarray) -> None:
    """The capacity clients encode their camera once and replay it: the loop decodes twice over,
    in order, frame ids intact, and the track hands aiortc packets with rising 90 kHz times."""
    import av
    from aiortc import MediaStreamTrack
    from swaprtc.benchmarks.capacity_client import encode_loop, replay_camera

    from tests.rtc_client import draw_frame_id, read_frame_id

    frames = [camera_picture(obama_bgr, (320, 240))] * 6
    packets = encode_loop(frames, draw_frame_id)
    assert len(packets) == 6
    camera = replay_camera(MediaStreamTrack, packets, fps=200.0)
    decoder: Any = av.CodecContext.create("libvpx", "r")
    # VP8's first byte: bit 0 clear on a keyframe. Only the first frame is one, so each pass of the
    # replay starts on a keyframe and nothing refers across the loop's seam.
    assert [p[0] & 1 for p in packets] == [0, 1, 1, 1, 1, 1]
    ids, times = [], []
    for _ in range(12):  # two passes of the loop
        packet = await camera.recv()
        times.append(packet.pts)
        for frame in decoder.decode(av.Packet(bytes(packet))):
            ids.append(read_frame_id(frame.to_ndarray(format="gray")))
    assert ids == [0, 1, 2, 3, 4, 5] * 2
    assert times == sorted(times) and len(set(times)) == 12
    assert set(camera.sent_at) == set(range(6))
    camera.stop()
