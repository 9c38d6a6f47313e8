"""``swaprtc swap`` on images and on a short generated video with audio, plus its error cases."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np
import pytest
from swaprtc.cli import main
from swaprtc.errors import BadImageError, NoFaceError, UnsupportedFormatError
from swaprtc.inference.runner import ModelRunner
from swaprtc.offline import UnreadableFileError, frame_time, swap_file
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.pipeline.embedder import ArcFaceEmbedder
from swaprtc.pipeline.neural import NeuralEngine
from swaprtc.pipeline.swapper import InSwapper
from swaprtc.types import SourceFace, SwapOptions, SwapResult

from tests.tiny_models import arcface_model, inswapper_model, make_emap, session

if TYPE_CHECKING:
    import onnxruntime as ort
    from swaprtc.models.store import ModelStore

W, H, FPS, N_FRAMES, SAMPLE_RATE = 320, 240, 12, 12, 44100


@pytest.fixture(scope="module")
def engine(retinaface_session: ort.InferenceSession) -> NeuralEngine:
    emap = make_emap()
    return NeuralEngine(
        RetinaFaceDetector(retinaface_session),
        ArcFaceEmbedder(session(arcface_model())),
        InSwapper(session(inswapper_model("invert", emap=emap)), emap),
    )


@pytest.fixture(scope="module")
def files(
    tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("offline")
    paths = {
        "source": folder / "source.png",
        "target": folder / "target.jpg",
        "blank": folder / "blank.png",
        "text": folder / "notes.jpg",
    }
    cv2.imwrite(str(paths["source"]), astronaut_bgr)
    cv2.imwrite(str(paths["target"]), grace_bgr)
    cv2.imwrite(str(paths["blank"]), np.full((120, 160, 3), 200, np.uint8))
    paths["text"].write_text("not an image")
    return paths


def scene(grace_bgr: np.ndarray, i: int) -> np.ndarray:
    """A 320×240 frame: a face on a textured background that moves a little each frame."""
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([(xx * 3 + i * 4) % 256, (yy * 2) % 256, np.full_like(xx, 120)], axis=2).astype(np.uint8)
    face = cv2.resize(grace_bgr, (150, 176))
    bg[30:206, 85 + i : 235 + i] = face
    return bg


def make_video(path: Path, grace_bgr: np.ndarray) -> None:
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = {"crf": "12", "preset": "veryfast"}
        a = out.add_stream("aac", rate=SAMPLE_RATE)
        a.layout = "mono"
        for i in range(N_FRAMES):
            out.mux(v.encode(av.VideoFrame.from_ndarray(scene(grace_bgr, i), format="bgr24")))
        out.mux(v.encode(None))
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, SAMPLE_RATE, 1024):
            chunk = tone[start : start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            out.mux(a.encode(frame))
        out.mux(a.encode(None))


def decode(path: Path) -> tuple[list[np.ndarray], av.VideoStream, list[str], Fraction]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = [s.codec_context.name for s in c.streams.audio]
        rate = v.average_rate
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(v)]
        return frames, v, audio, rate


def test_image_end_to_end(
    engine: NeuralEngine, files: dict[str, Path], grace_bgr: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "out.png"
    stats = swap_file(files["source"], files["target"], out, engine, SwapOptions(), progress=False)
    assert stats.kind == "image" and stats.frames_swapped == 1
    result = cv2.imread(str(out))
    target = cv2.imread(str(files["target"]))
    assert result.shape == target.shape
    face = engine.detect(target)[0]
    x1, y1, x2, y2 = face.bbox.astype(int)
    cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
    assert (
        np.abs(
            result[cy - 20 : cy + 20, cx - 20 : cx + 20].astype(int)
            - target[cy - 20 : cy + 20, cx - 20 : cx + 20].astype(int)
        ).mean()
        > 40
    )
    # far from the face (bottom rows), the lossless PNG output equals the decoded target exactly
    assert np.array_equal(result[-40:], target[-40:])
    assert not list(tmp_path.glob(".*partial*")), "partial file left behind"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, grace_bgr: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    make_video(path, grace_bgr)
    return path


def test_video_end_to_end_with_audio(
    engine: NeuralEngine, files: dict[str, Path], video: Path, tmp_path: Path
) -> None:
    out = tmp_path / "swapped.mp4"
    stats = swap_file(files["source"], video, out, engine, SwapOptions(), progress=False)
    assert stats.kind == "video" and stats.audio == "copied"
    assert stats.frames == N_FRAMES and stats.frames_swapped == N_FRAMES

    src_frames, _, src_audio, src_rate = decode(video)
    out_frames, _, out_audio, out_rate = decode(out)
    assert src_audio == ["aac"] and out_audio == ["aac"]
    assert out_rate == src_rate == FPS
    assert len(out_frames) == len(src_frames) == N_FRAMES
    for i, (before, after) in enumerate(zip(src_frames, out_frames, strict=True)):
        assert after.shape == (H, W, 3)
        face = engine.detect(before)[0]
        x1, y1, x2, y2 = face.bbox.astype(int)
        cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
        centre = (slice(cy - 15, cy + 15), slice(cx - 15, cx + 15))
        assert np.abs(after[centre].astype(int) - before[centre].astype(int)).mean() > 40, i
        # the background strip below the face is unchanged up to codec noise
        assert np.abs(after[215:].astype(int) - before[215:].astype(int)).mean() < 3, i

    with av.open(str(video)) as a, av.open(str(out)) as b:
        pa = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
        pb = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
    assert pa == pb, "audio packets must be copied unchanged"


def test_video_without_audio(
    engine: NeuralEngine, files: dict[str, Path], grace_bgr: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "silent.mkv"
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        for i in range(3):
            out.mux(v.encode(av.VideoFrame.from_ndarray(scene(grace_bgr, i), format="bgr24")))
        out.mux(v.encode(None))
    out_path = tmp_path / "silent_out.mkv"
    stats = swap_file(files["source"], path, out_path, engine, SwapOptions(), progress=False)
    assert stats.audio == "none" and stats.frames == 3
    frames, _, audio, rate = decode(out_path)
    assert len(frames) == 3 and audio == [] and rate == 10


class _RecordingEngine:
    """Wraps a real engine; its streams record the timestamp each frame came with."""

    def __init__(self, engine: NeuralEngine) -> None:
        self.engine = engine
        self.timestamps: list[float | None] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)

    def open_stream(self) -> _RecordingEngine:
        self.stream = self.engine.open_stream()
        return self

    def process(
        self,
        frame: np.ndarray,
        source: SourceFace | None,
        options: SwapOptions,
        timestamp_s: float | None = None,
    ) -> SwapResult:
        self.timestamps.append(timestamp_s)
        return self.stream.process(frame, source, options, timestamp_s)


def test_video_frames_carry_their_own_time(
    engine: NeuralEngine, files: dict[str, Path], video: Path, tmp_path: Path
) -> None:
    recorder = _RecordingEngine(engine)
    swap_file(
        files["source"],
        video,
        tmp_path / "timed.mp4",
        recorder,
        SwapOptions(),  # type: ignore[arg-type]
        progress=False,
    )
    times = recorder.timestamps
    assert len(times) == N_FRAMES and all(t is not None for t in times)
    # 12 fps, not the nominal 30 fps a live stream would assume.
    np.testing.assert_allclose(np.diff(np.asarray(times, dtype=float)), 1 / FPS, atol=1e-3)


def test_frame_time_falls_back_to_pts() -> None:
    frame = av.VideoFrame(16, 16, "yuv420p")
    assert frame_time(frame) is None
    frame.pts, frame.time_base = 90, Fraction(1, 30)
    assert frame_time(frame) == pytest.approx(3.0)


def test_cli_end_to_end(
    monkeypatch: pytest.MonkeyPatch,
    engine: NeuralEngine,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import swaprtc.factory

    monkeypatch.setattr(swaprtc.factory, "build_engine", lambda settings: engine)
    out = tmp_path / "cli.jpg"
    code = main(
        [
            "swap",
            "--source",
            str(files["source"]),
            "--target",
            str(files["target"]),
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("missing_source", "unreadable_file"),
        ("missing_target", "unreadable_file"),
        ("text_source", "not_an_image"),
        ("no_face_source", "no_face"),
        ("bad_extension", "unsupported_format"),
        ("image_to_video", "unsupported_format"),
        ("bad_strength", "bad_argument"),
    ],
)
def test_cli_errors(
    monkeypatch: pytest.MonkeyPatch,
    engine: NeuralEngine,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    code: str,
) -> None:
    import swaprtc.factory

    monkeypatch.setattr(swaprtc.factory, "build_engine", lambda settings: engine)
    args = {
        "--source": str(files["source"]),
        "--target": str(files["target"]),
        "--output": str(tmp_path / "o.png"),
    }
    extra: list[str] = []
    if case == "missing_source":
        args["--source"] = str(tmp_path / "nope.jpg")
    elif case == "missing_target":
        args["--target"] = str(tmp_path / "nope.mp4")
    elif case == "text_source":
        args["--source"] = str(files["text"])
    elif case == "no_face_source":
        args["--source"] = str(files["blank"])
    elif case == "bad_extension":
        args["--output"] = str(tmp_path / "o.gif")
    elif case == "image_to_video":
        args["--output"] = str(tmp_path / "o.mp4")
    elif case == "bad_strength":
        extra = ["--strength", "1.5"]
    argv = ["swap", *[x for kv in args.items() for x in kv], "--no-progress", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"[{code}]" in err
    assert not (tmp_path / "o.png").exists()


def test_error_types(engine: NeuralEngine, files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(NoFaceError, match=r"blank\.png"):
        swap_file(files["blank"], files["target"], tmp_path / "x.png", engine, SwapOptions(), False)
    with pytest.raises(BadImageError):
        swap_file(files["text"], files["target"], tmp_path / "x.png", engine, SwapOptions(), False)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="unsupported file type"):
        swap_file(files["source"], notes, tmp_path / "x.txt", engine, SwapOptions(), False)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(UnreadableFileError):
        swap_file(files["source"], broken, tmp_path / "x.mp4", engine, SwapOptions(), False)
    assert not (tmp_path / "x.mp4").exists()


def test_video_to_webm_reencodes_audio(
    engine: NeuralEngine, files: dict[str, Path], video: Path, tmp_path: Path
) -> None:
    out = tmp_path / "swapped.webm"
    stats = swap_file(files["source"], video, out, engine, SwapOptions(), progress=False)
    assert stats.audio.startswith("re-encoded") and stats.frames == N_FRAMES
    frames, _, audio, rate = decode(out)
    assert len(frames) == N_FRAMES and rate == FPS and audio == ["opus"]
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        samples = sum(f.samples for f in c.decode(audio=0))
    assert abs(samples / 48000 - 1.0) < 0.1  # about one second of sound survived


def test_slow_models_still_swap_every_face_offline(
    tmp_path: Path, model_store: ModelStore, grace_bgr: np.ndarray, astronaut_bgr: np.ndarray
) -> None:
    """A file has no live deadline: a swap slower than --swap-deadline-ms (a neural model on a
    CPU) is waited for, where a live stream hides the face instead."""
    from dataclasses import replace

    from swaprtc.inference.loader import local_neural_runners, neural_batching
    from swaprtc.offline import offline_settings
    from swaprtc.settings import Settings

    from tests.tiny_models import TinyStore

    models = {"w600k_r50": arcface_model(), "inswapper_128": inswapper_model("invert", emap=make_emap())}
    store = TinyStore(tmp_path, models, {"retinaface_mnet025": model_store.ensure("retinaface_mnet025")})
    live = Settings(swap_deadline_ms=20, batch_window_ms=2, detect_every=1)
    runners = local_neural_runners(store, live)  # type: ignore[arg-type]
    runners = replace(runners, swapper=_Slow(runners.swapper, 0.2))
    results = {}
    for name, settings in {"live": live, "offline": offline_settings(live)}.items():
        batching = neural_batching(runners, settings)
        engine = NeuralEngine.from_runners(runners, batching=batching)
        source = engine.prepare_source(astronaut_bgr)
        results[name] = engine.open_stream().process(grace_bgr, source, SwapOptions()).swapped
        if batching is not None:
            batching.close()
    assert results == {"live": 0, "offline": 1}


class _Slow:
    def __init__(self, runner: ModelRunner, delay_s: float) -> None:
        self.runner, self.delay_s = runner, delay_s
        self.inputs, self.outputs, self.max_batch = runner.inputs, runner.outputs, runner.max_batch

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        time.sleep(self.delay_s)
        return self.runner.run(feeds)


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [([], None, 1), (["--swap-every", "3"], None, 3), ([], "2", 2), (["--swap-every", "4"], "2", 4)],
)
def test_offline_swap_gives_every_frame_a_full_swap_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
    engine: NeuralEngine,
    files: dict[str, Path],
    tmp_path: Path,
    flags: list[str],
    env: str | None,
    expected: int,
) -> None:
    # The live keyframe cadence (default 3) is for CPU; a file conversion has no deadline.
    import swaprtc.factory

    built: list[int] = []

    def build(settings: object) -> NeuralEngine:
        built.append(getattr(settings, "swap_every"))  # noqa: B009
        return engine

    monkeypatch.setattr(swaprtc.factory, "build_engine", build)
    if env is None:
        monkeypatch.delenv("SWAPRTC_SWAP_EVERY", raising=False)
    else:
        monkeypatch.setenv("SWAPRTC_SWAP_EVERY", env)
    out = tmp_path / "cadence.jpg"
    args = ["swap", "--source", str(files["source"]), "--target", str(files["target"])]
    assert main([*args, "--output", str(out), "--no-progress", "--c2pa", "off", *flags]) == 0
    assert built == [expected]


def test_serve_keeps_the_live_cadence_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from swaprtc.cli import build_parser
    from swaprtc.settings import Settings

    monkeypatch.delenv("SWAPRTC_SWAP_EVERY", raising=False)
    args = build_parser().parse_args(["serve"])
    assert Settings.from_env().with_args(args).swap_every == 3
    # Each command's help states its own default.
    for command, default in (("swap", 1), ("serve", 3)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"SWAPRTC_SWAP_EVERY, default {default})" in " ".join(capsys.readouterr().out.split())
