"""SwapTrack: newest-frame dropping, bounded latency, pts order and the never-leak policy."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import vp8_depayload
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.rtc.encoders import Bitrates, RealtimeVp8Encoder
from swaprtc.rtc.privacy import hide_faces, hide_frame
from swaprtc.rtc.track import Arrival, InferencePool, StreamControl, SwapTrack, to_video_frame
from swaprtc.types import Face

from tests.engine_doubles import ASTRONAUT_FACE, PAINT_BGR, FixedFaceDetector, PaintEngine
from tests.rtc_client import SyntheticCamera, draw_frame_id, read_frame_id

if TYPE_CHECKING:
    import onnxruntime as ort

FACE = (slice(75, 165), slice(190, 262))  # rows, cols well inside the astronaut's face box
# A second "face" on the astronaut's suit (textured, away from the first face and the id strip).
OTHER_FACE = Face(
    bbox=np.array([360, 220, 430, 300], np.float32), score=0.9, kps=np.zeros((5, 2), np.float32)
)
OTHER = (slice(230, 290), slice(370, 420))  # rows, cols inside OTHER_FACE


class QueueTrack(MediaStreamTrack):
    """Stands in for aiortc's RemoteStreamTrack: an unbounded queue filled at camera pace."""

    kind = "video"

    def __init__(self, camera: SyntheticCamera) -> None:
        super().__init__()
        self.queue: asyncio.Queue[VideoFrame | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._fill(camera))

    async def _fill(self, camera: SyntheticCamera) -> None:
        try:
            while True:
                await self.queue.put(await camera.recv())
        except MediaStreamError:
            await self.queue.put(None)

    async def recv(self) -> VideoFrame:
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        self._task.cancel()
        super().stop()


@pytest.fixture(scope="module")
def detector(retinaface_session: ort.InferenceSession) -> RetinaFaceDetector:
    return RetinaFaceDetector(retinaface_session)


@pytest.fixture
async def pool() -> AsyncIterator[InferencePool]:
    pool = InferencePool(1)
    yield pool
    pool.shutdown()


def yuv_roundtrip(image: np.ndarray) -> np.ndarray:
    return to_video_frame(image, 0).to_ndarray(format="bgr24")


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def is_painted(image: np.ndarray) -> bool:
    return diff(image[FACE], np.broadcast_to(np.array(PAINT_BGR, np.uint8), image[FACE].shape)) < 12


def make_track(
    camera_image: np.ndarray,
    engine: PaintEngine,
    pool: InferencePool,
    *,
    fps: float = 30.0,
    source: bool = True,
    **kwargs: float,
) -> tuple[SwapTrack, SyntheticCamera, StreamControl]:
    camera = SyntheticCamera(camera_image, fps)
    control = StreamControl()
    if source:
        control.set_source(engine.prepare_source(camera_image))
    track = SwapTrack(QueueTrack(camera), engine, engine.open_stream(), control, pool, **kwargs)
    return track, camera, control


async def take(track: SwapTrack, n: int) -> list[tuple[np.ndarray, int, float]]:
    out = []
    for _ in range(n):
        frame = await track.recv()
        out.append((frame.to_ndarray(format="bgr24"), frame.pts, time.monotonic()))
    return out


def assert_no_leak(frames: list[tuple[np.ndarray, int, float]], original: np.ndarray) -> None:
    """No frame shows the face region as the camera saw it."""
    reference = yuv_roundtrip(original)[FACE]
    for image, _, _ in frames:
        assert diff(image[FACE], reference) > 8, "an unswapped face was sent"


async def test_without_source_frames_pass_through(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(detector)
    track, _, _ = make_track(astronaut_bgr, engine, pool, source=False)
    frames = await take(track, 5)
    track.stop()
    for image, _, _ in frames:
        fid = read_frame_id(image)
        assert diff(image, yuv_roundtrip(draw_frame_id(astronaut_bgr, fid))) < 2
    assert engine.calls == 0


async def test_swaps_the_face_and_leaves_the_rest(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(detector)
    # A generous deadline: a busy machine must not turn this into a test of the hiding path.
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0)
    frames = await take(track, 6)
    track.stop()
    for image, _, _ in frames:
        assert is_painted(image)
        expected = yuv_roundtrip(draw_frame_id(astronaut_bgr, read_frame_id(image)))
        assert diff(image[300:], expected[300:]) < 2  # below the face: untouched
    assert track.stats.swapped_frames == 6 and track.stats.faces == 1


async def test_frames_without_a_face_pass_through_with_a_source(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(detector)
    scene = np.zeros_like(astronaut_bgr)
    scene[:] = np.linspace(0, 255, scene.shape[1], dtype=np.uint8)[None, :, None]
    camera = SyntheticCamera(scene)
    control = StreamControl()
    control.set_source(engine.prepare_source(astronaut_bgr))
    track = SwapTrack(QueueTrack(camera), engine, engine.open_stream(), control, pool, deadline_s=5.0)
    frames = await take(track, 4)
    track.stop()
    for image, _, _ in frames:
        assert diff(image, yuv_roundtrip(draw_frame_id(scene, read_frame_id(image)))) < 2
    assert engine.calls >= 1 and track.stats.hidden_frames == 0


async def test_slow_engine_drops_frames_and_latency_stays_bounded(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    """A 30 fps camera into a 120 ms engine: the swap track drops frames and keeps latency flat,
    while awaiting every frame (the unbounded-queue baseline) falls further behind each second."""
    engine = PaintEngine(FixedFaceDetector(), delay_s=0.12)
    track, camera, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0)
    frames = await take(track, 14)
    track.stop()
    latencies = [at - camera.sent_at[read_frame_id(image)] for image, _, at in frames]
    pts = [p for _, p, _ in frames]
    assert all(b > a for a, b in itertools.pairwise(pts)), pts
    assert track.stats.dropped > 10
    assert max(latencies[3:]) < 0.4, latencies
    assert all(is_painted(image) for image, _, _ in frames)

    # Baseline: process every upstream frame in order on the same executor.
    base_engine = PaintEngine(FixedFaceDetector(), delay_s=0.12)
    processor = base_engine.open_stream()
    source = base_engine.prepare_source(astronaut_bgr)
    base_camera = SyntheticCamera(astronaut_bgr, 30.0)
    upstream = QueueTrack(base_camera)
    base_latencies = []
    loop = asyncio.get_running_loop()
    for _ in range(14):
        frame = await upstream.recv()
        image = frame.to_ndarray(format="bgr24")
        await loop.run_in_executor(pool.inference, processor.process, image, source, track._control.options)
        base_latencies.append(time.monotonic() - base_camera.sent_at[read_frame_id(image)])
    upstream.stop()
    assert base_latencies[-1] > 2 * max(latencies[3:])
    assert base_latencies[-1] > base_latencies[5] + 0.5  # the baseline keeps falling behind


async def test_no_leak_before_the_first_swap_is_ready(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(FixedFaceDetector(), first_delay_s=0.8)
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=0.1)
    frames = await take(track, 3)
    while not is_painted(frames[-1][0]) and len(frames) < 60:
        frames += await take(track, 1)
    frames += await take(track, 2)
    track.stop()
    assert_no_leak(frames, astronaut_bgr)
    assert track.stats.hidden_frames >= 3  # warm-up frames went out hidden ...
    assert all(is_painted(image) for image, _, _ in frames[-3:])  # ... then the swap took over
    hidden = frames[0][0]
    assert not is_painted(hidden)
    reference = hide_faces(yuv_roundtrip(astronaut_bgr), detector.detect(astronaut_bgr))
    assert diff(hidden[FACE], reference[FACE]) < 10  # pixelated where the face is


async def test_engine_error_on_one_frame_hides_faces_and_the_stream_goes_on(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(FixedFaceDetector(), fail_on={3})
    # A generous deadline: frame i is exactly engine call i + 1, however busy the machine is.
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0, guard_timeout_s=5.0)
    frames = await take(track, 8)
    track.stop()
    assert track.stats.engine_errors == 1
    assert_no_leak(frames, astronaut_bgr)
    assert [is_painted(image) for image, _, _ in frames] == [True, True, False, True, True, True, True, True]
    # The bottom strip is outside the face: still readable on the hidden frame.
    assert read_frame_id(frames[2][0]) >= 2


async def test_engine_and_detector_failing_hide_the_whole_frame(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(detector, fail_if=lambda _: True, detect_fails=True)
    track, _, _ = make_track(astronaut_bgr, engine, pool)
    frames = await take(track, 3)
    track.stop()
    assert_no_leak(frames, astronaut_bgr)
    whole = yuv_roundtrip(hide_frame(astronaut_bgr))
    for image, _, _ in frames:
        assert diff(image[:400], whole[:400]) < 6  # the whole frame pixelated, not just a face
    assert track.stats.engine_errors == 3


async def test_a_new_source_takes_effect_on_the_next_frame(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(detector)
    track, _, control = make_track(astronaut_bgr, engine, pool, deadline_s=5.0)
    await take(track, 2)
    green = PaintEngine(detector, colour=(0, 255, 0)).prepare_source(astronaut_bgr)
    control.set_source(green)
    ((image, _, _),) = await take(track, 1)
    track.stop()
    assert diff(image[FACE], np.broadcast_to(np.array((0, 255, 0), np.uint8), image[FACE].shape)) < 12
    assert engine.processors[0].resets == 1
    control.set_source(None)


def test_output_frames_are_yuv420p_and_cropped_to_even_sizes() -> None:
    image = np.full((101, 63, 3), 128, np.uint8)
    frame = to_video_frame(image, 5)
    assert frame.format.name == "yuv420p"
    assert (frame.width, frame.height) == (62, 100)
    assert frame.pts == 5


async def test_a_slow_session_does_not_starve_a_fast_one(
    astronaut_bgr: np.ndarray, pool: InferencePool
) -> None:
    """Two tracks share one inference worker; each has at most one job in flight, so the fast
    session waits behind at most one slow job per frame instead of behind a backlog."""
    slow = PaintEngine(FixedFaceDetector(), delay_s=0.15)
    fast = PaintEngine(FixedFaceDetector(), delay_s=0.005)
    slow_track, _, _ = make_track(astronaut_bgr, slow, pool, deadline_s=5.0)
    fast_track, _, _ = make_track(astronaut_bgr, fast, pool, deadline_s=5.0)

    async def pump(track: SwapTrack, until: float) -> int:
        count = 0
        while time.monotonic() < until:
            await track.recv()
            count += 1
        return count

    until = time.monotonic() + 1.5
    n_slow, n_fast = await asyncio.gather(pump(slow_track, until), pump(fast_track, until))
    slow_track.stop()
    fast_track.stop()
    # Turn-taking: the fast session gets about one frame per slow job (~6 fps here), no fewer.
    assert n_fast >= 0.8 * n_slow and n_fast >= 5, (n_fast, n_slow)
    assert slow_track.stats.dropped > 10  # the slow session thins its own camera, not the others'


def assert_other_face_hidden(image: np.ndarray, original: np.ndarray) -> None:
    raw = yuv_roundtrip(original)
    pixelated = hide_faces(raw, [OTHER_FACE])
    assert diff(image[OTHER], raw[OTHER]) > 15, "the unswapped second face was sent as it is"
    assert diff(image[OTHER], pixelated[OTHER]) < 6


async def test_a_partly_swapped_frame_hides_the_unswapped_face(
    astronaut_bgr: np.ndarray, pool: InferencePool
) -> None:
    # One-face mode: the first face is painted, the second is listed in ``unswapped``.
    engine = PaintEngine(FixedFaceDetector((ASTRONAUT_FACE, OTHER_FACE)))
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0)
    frames = await take(track, 4)
    track.stop()
    for image, _, _ in frames:
        assert is_painted(image)
        assert_other_face_hidden(image, astronaut_bgr)
    assert track.stats.swapped_frames == 4
    assert (track.stats.faces, track.stats.hidden) == (2, 1)


async def test_faces_found_but_none_swapped_are_hidden(
    astronaut_bgr: np.ndarray, pool: InferencePool
) -> None:
    engine = PaintEngine(FixedFaceDetector((ASTRONAUT_FACE, OTHER_FACE)), max_swaps=0)
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0)
    frames = await take(track, 3)
    track.stop()
    assert_no_leak(frames, astronaut_bgr)
    for image, _, _ in frames:
        assert not is_painted(image)
        assert_other_face_hidden(image, astronaut_bgr)
    assert track.stats.swapped_frames == 0 and track.stats.hidden_frames == 3
    assert track.stats.hidden == 2


async def test_a_face_the_guard_misses_stays_hidden_on_engine_errors(
    astronaut_bgr: np.ndarray, pool: InferencePool
) -> None:
    """On an engine error the track hides what the quick guard detection finds plus the faces of
    the latest engine result: a face the guard misses (here the astronaut's) stays covered where the
    engine last saw it, also over several failing frames in a row."""
    engine = PaintEngine(
        FixedFaceDetector((ASTRONAUT_FACE, OTHER_FACE)),
        guard=FixedFaceDetector((OTHER_FACE,)),
        fail_on={3, 4},
    )
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0, guard_timeout_s=5.0)
    frames = await take(track, 6)
    track.stop()
    assert track.stats.engine_errors == 2
    assert [is_painted(image) for image, _, _ in frames] == [True, True, False, False, True, True]
    assert_no_leak(frames, astronaut_bgr)
    for image, _, _ in frames:
        assert_other_face_hidden(image, astronaut_bgr)


async def test_the_first_source_set_mid_stream_swaps_the_next_frames(
    astronaut_bgr: np.ndarray, detector: RetinaFaceDetector, pool: InferencePool
) -> None:
    engine = PaintEngine(detector)
    track, _, control = make_track(astronaut_bgr, engine, pool, source=False, deadline_s=5.0)
    before = await take(track, 3)
    assert not any(is_painted(image) for image, _, _ in before)
    assert engine.calls == 0  # nothing to swap yet: frames went out as they came
    control.set_source(engine.prepare_source(astronaut_bgr))
    after = await take(track, 3)
    track.stop()
    assert all(is_painted(image) for image, _, _ in after)
    assert track.stats.swapped_frames == 3


async def test_the_processor_gets_each_frames_presentation_time(
    astronaut_bgr: np.ndarray, pool: InferencePool
) -> None:
    engine = PaintEngine(FixedFaceDetector())
    track, camera, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0)
    frames = await take(track, 4)
    track.stop()
    # The camera stamps frame n with pts n * 3000 at 1/90000 s: n / 30 seconds.
    expected = [read_frame_id(image) / camera.fps for image, _, _ in frames]
    assert engine.processors[0].timestamps == pytest.approx(expected)


def test_a_frame_without_pts_is_timed_by_its_arrival() -> None:
    frame = to_video_frame(np.zeros((16, 16, 3), np.uint8), None)
    assert SwapTrack._timestamp_s(Arrival(frame, at=12.5)) == 12.5


async def test_every_frame_is_sent_or_counted_as_dropped(
    astronaut_bgr: np.ndarray, pool: InferencePool
) -> None:
    """A warm-up longer than the deadline: frames go out hidden while the first swap runs; when it
    finishes, the frame taken at that moment is replaced by the late swap and counted as dropped."""
    engine = PaintEngine(FixedFaceDetector(), first_delay_s=0.5)
    camera = SyntheticCamera(astronaut_bgr, 30.0, max_frames=24)
    control = StreamControl()
    control.set_source(engine.prepare_source(astronaut_bgr))
    track = SwapTrack(QueueTrack(camera), engine, engine.open_stream(), control, pool, deadline_s=0.1)
    ids = []
    with pytest.raises(MediaStreamError):
        while True:
            frame = await track.recv()
            ids.append(read_frame_id(frame.to_ndarray(format="bgr24")))
    assert track.stats.frames_in == 24
    assert len(ids) > len(set(ids))  # the first frame went out hidden, then again swapped
    assert len(set(ids)) + track.stats.dropped == 24


PIXEL_CALLS = {"to_ndarray", "cvtColor", "from_numpy_buffer", "resize", "reformat"}


async def recv_watching_loop(track: SwapTrack, n: int) -> tuple[list[np.ndarray], set[str]]:
    """``n`` frames from ``track``, and the pixel-work C calls made on the event loop's thread
    meanwhile (sys.setprofile sees only this thread: executor threads are not watched)."""
    import sys
    from typing import Any

    seen: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") in PIXEL_CALLS:
            seen.add(arg.__name__)

    frames = []
    for _ in range(n):
        sys.setprofile(profile)
        try:
            frame = await track.recv()
        finally:
            sys.setprofile(None)
        frames.append(frame.to_ndarray(format="bgr24"))
    return frames, seen


async def test_pixel_work_stays_off_the_event_loop(astronaut_bgr: np.ndarray, pool: InferencePool) -> None:
    """Conversions (decoded frame -> BGR -> I420) and pixelation run in the executor jobs, for
    swapped frames, partly swapped frames (a second face pixelated) and deadline misses alike."""
    engine = PaintEngine(FixedFaceDetector((ASTRONAUT_FACE, OTHER_FACE)), max_swaps=1, first_delay_s=0.5)
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=0.1, guard_timeout_s=5.0)
    frames, seen = await recv_watching_loop(track, 12)
    track.stop()
    assert track.stats.hidden_frames >= 2 and track.stats.swapped_frames >= 2  # both paths ran
    assert is_painted(frames[-1]) and diff(frames[-1][OTHER], astronaut_bgr[OTHER]) > 8
    assert seen == set(), f"pixel work on the event loop: {seen}"


def test_one_frame_converted_by_two_threads_at_once(astronaut_bgr: np.ndarray) -> None:
    """The swap job and the guard can convert the same decoded frame at the same moment (a frame
    whose own swap misses the deadline). PyAV's per-frame converter deadlocks when shared; the
    pool gives each thread its own."""
    import threading

    pool = InferencePool(1)
    try:
        for _ in range(40):
            frame = to_video_frame(astronaut_bgr, 0)
            results: list[np.ndarray] = []
            threads = [
                threading.Thread(target=lambda f=frame, r=results: r.append(pool.to_bgr(f)), daemon=True)
                for _ in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert not any(t.is_alive() for t in threads), "conversion deadlocked"
            assert len(results) == 2 and np.array_equal(results[0], results[1])
    finally:
        pool.shutdown()


def test_people_keep_their_person_on_frames_made_between_keyframes() -> None:
    """An engine's reused frame reports new Face objects of the same tracks: the stats still name
    the person and source the casting gave that track on its last keyframe."""
    from swaprtc.casting import CastFace
    from swaprtc.rtc.track import describe_people

    def face(x: float, track: int | None) -> Face:
        return Face(np.array([x, 10, x + 50, 60], np.float32), 0.9, np.zeros((5, 2), np.float32), track=track)

    keyframe = (face(0, 7), face(100, 8))
    cast = (CastFace(1, keyframe[0], "default"), CastFace(2, keyframe[1], None))
    moved = (face(2, 7), face(102, 8), face(300, None))  # and one face no track follows
    people, _ = describe_people(moved, (moved[1], moved[2]), cast, (480, 640, 3))
    assert [(p["person"], p["source"], p["state"]) for p in people] == [
        (1, "default", "swapped"),
        (2, None, "hidden"),
        (None, None, "hidden"),
    ]
    assert people[0]["box"] == [round(2 / 640, 4), round(10 / 480, 4), round(52 / 640, 4), round(60 / 480, 4)]


async def sender_like(track: SwapTrack, encoder: RealtimeVp8Encoder, n: int) -> list[tuple[bool, int, bytes]]:
    """What aiortc's sender does with ``n`` frames of ``track``: a frame is encoded on the default
    executor, an ``EncodedFrame`` only packed. (encoded in the job, RTP timestamp, VP8 data)."""
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(n):
        data = await track.recv()
        if isinstance(data, VideoFrame):
            payloads, timestamp = await loop.run_in_executor(None, encoder.encode, data, False)
        else:
            payloads, timestamp = encoder.pack(data)
        out.append(
            (not isinstance(data, VideoFrame), timestamp, b"".join(vp8_depayload(p) for p in payloads))
        )
    return out


def watch_encodes(encoder: RealtimeVp8Encoder) -> list[str]:
    """Record the thread of every encode, and fail if two threads ever encode at once."""
    threads: list[str] = []
    busy = threading.Lock()
    encode = encoder.encode

    def watched(frame: VideoFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert busy.acquire(blocking=False), "two threads encode at once"
        try:
            threads.append(threading.current_thread().name)
            return encode(frame, force_keyframe)
        finally:
            busy.release()

    encoder.encode = watched  # type: ignore[method-assign]
    return threads


async def test_swapped_frames_are_encoded_in_the_swap_job(
    astronaut_bgr: np.ndarray, pool: InferencePool
) -> None:
    engine = PaintEngine(FixedFaceDetector())
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=5.0)
    encoder = RealtimeVp8Encoder(Bitrates(500_000, 1_500_000, 4_000_000))
    threads = watch_encodes(encoder)
    track.encode_with(encoder)
    sent = await sender_like(track, encoder, 6)
    track.stop()
    assert all(in_job for in_job, _, _ in sent)
    assert threads and all(name.startswith("swaprtc-infer") for name in threads), threads
    decoder = av.CodecContext.create("libvpx", "r")
    for _, _, data in sent:
        (picture,) = decoder.decode(av.Packet(data))
        assert is_painted(picture.to_ndarray(format="bgr24"))


async def test_a_late_swap_is_not_encoded_in_its_job(astronaut_bgr: np.ndarray, pool: InferencePool) -> None:
    """A swap slower than the deadline: the hidden frames go out meanwhile (encoded by the sender),
    so the late swap must not encode in its job (out of order, or on two threads at once); it
    goes out as a frame after them. Every frame decodes, in order, painted or hidden."""
    engine = PaintEngine(FixedFaceDetector(), delay_s=0.15, first_delay_s=0.4)
    track, _, _ = make_track(astronaut_bgr, engine, pool, deadline_s=0.1)
    encoder = RealtimeVp8Encoder(Bitrates(500_000, 1_500_000, 4_000_000))
    watch_encodes(encoder)
    track.encode_with(encoder)
    sent = await sender_like(track, encoder, 12)
    track.stop()
    await track.close()
    timestamps = [ts for _, ts, _ in sent]
    assert all(b > a for a, b in itertools.pairwise(timestamps)), timestamps
    assert not any(in_job for in_job, _, _ in sent)  # every swap was late: none encoded ahead
    assert track.stats.hidden_frames >= 3
    decoder = av.CodecContext.create("libvpx", "r")
    reference = yuv_roundtrip(astronaut_bgr)[FACE]
    painted = 0
    for _, _, data in sent:
        (picture,) = decoder.decode(av.Packet(data))
        image = picture.to_ndarray(format="bgr24")
        assert diff(image[FACE], reference) > 8, "an unswapped face was sent"
        painted += is_painted(image)
    assert painted >= 2  # late swaps went out too
