"""``swaprtc bench --suite capacity``: how many real sessions a server holds.

For each worker count and resolution it starts ``swaprtc serve --workers N`` (embedded engine,
loopback ICE, rate limits off), then ramps sessions one at a time. Each session is a real aiortc
client in its own process (capacity_client.py) uploading a real face and streaming a real face at
30 fps. After each new session settles, a window of ``step_s`` seconds is measured: frames and
latency of every session, the CPU of the server's processes (supervisor and workers) and of the
clients, separately, and each worker's resident memory. A step passes when every session receives
>= 25 fps and its latency is flat (median of the window's second half within 50 ms of the first
half's). The ramp stops after two failing steps in a row (``--ramp-all``: never); the capacity is
the largest passing step. Each step also reports ``aggregate_fps`` (all sessions' frames per
second together), which still compares worker counts on a machine too busy for any step to pass.
Client CPU competes with the server on the same machine: ``server_cores_per_session`` is the
server-only figure.

``cameras`` (``--camera still,drift,talking``): what the clients stream (capacity_client.CAMERAS);
each camera is its own ramp, run after the other at the same worker count and resolution so that
still and talking sessions are measured side by side. The talking face is warped from the camera
picture's five key points, found once here by the caller's detector and handed to every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np

from swaprtc.benchmarks.capacity_client import check_cameras, client_main
from swaprtc.benchmarks.session_cost import RESOLUTIONS, client_photos
from swaprtc.settings import Settings
from swaprtc.types import Face
from swaprtc.workers.memory import cpu_seconds, rss_bytes

log = logging.getLogger(__name__)

MIN_FPS = 25.0
FLAT_MS = 50.0
SETTLE_S = 3.0
FAILS_TO_STOP = 2
SUMMARY_KEYS = ("workers", "resolution", "camera", "max_sessions", "peak_aggregate_fps", "peak_at_sessions")
Detect = Callable[[np.ndarray], Sequence[Face]]


@dataclass(frozen=True)
class CapacityPlan:
    workers: list[str]
    resolutions: list[str]
    max_sessions: int = 12
    step_s: float = 8.0
    ramp_all: bool = False  # measure every step up to max_sessions, even after failures
    cameras: tuple[str, ...] = ("still",)  # what the clients stream, one ramp each


@dataclass
class Client:
    process: BaseProcess
    conn: Connection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def camera_picture(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The streamed picture: a portrait photo filling the frame as a webcam frames a person, the
    whole head in view. Cropped to the frame's aspect ratio from the top, centred sideways: a
    centred crop of a tall portrait cuts the head off at the eyes (what this benchmark streamed
    until 2026-12-01, so figures before then are of a half face)."""
    w, h = size
    scale = max(w / photo.shape[1], h / photo.shape[0])
    big = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
    x = (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[:h, x : x + w])


def camera_points(camera: str, picture: np.ndarray, detect: Detect | None) -> np.ndarray | None:
    """The five key points of ``picture``'s face that the talking camera is warped from, found once
    by the parent for all its clients; None for the other cameras, which need none."""
    if camera != "talking":
        return None
    if detect is None:
        raise ValueError("the talking camera needs a face detector to place its mouth and brows")
    faces = detect(picture)
    if not faces:
        raise RuntimeError("no face found in the camera picture")
    return np.asarray(faces[0].kps, np.float32)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def judge_session(latencies_s: list[float], window_s: float) -> dict[str, Any]:
    """fps, latency p50/p95 (ms) and flatness of one session's window."""
    ms = [v * 1000.0 for v in latencies_s]
    half = len(ms) // 2
    first, second = ms[:half], ms[half:]
    growth = statistics.median(second) - statistics.median(first) if first and second else float("nan")
    return {
        "fps": round(len(ms) / window_s, 1),
        "latency_p50_ms": round(_percentile(ms, 0.5), 1),
        "latency_p95_ms": round(_percentile(ms, 0.95), 1),
        "latency_growth_ms": round(growth, 1),
    }


class ServerUnderTest:
    def __init__(
        self, settings: Settings, workers: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SWAPRTC_MODELS_DIR": str(settings.models_dir),
            "SWAPRTC_AUTO_DOWNLOAD": "true" if settings.auto_download else "false",
            "SWAPRTC_ENGINE": "embedded",
            "SWAPRTC_ICE_LOOPBACK": "true",
            "SWAPRTC_WORKERS": workers,
            "SWAPRTC_MAX_SESSIONS": "256",
            "SWAPRTC_RATE_SESSION_PER_MIN": "0",
            "SWAPRTC_RATE_OFFER_PER_MIN": "0",
            "SWAPRTC_RATE_SOURCE_PER_MIN": "0",
            "SWAPRTC_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "swaprtc", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, http: aiohttp.ClientSession, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}")
            try:
                async with http.get(f"{self.base}/api/info") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
        raise RuntimeError("the server did not become ready")

    async def processes(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """pid and role of every server process (one, or the supervisor and its workers)."""
        async with http.get(f"{self.base}/api/info") as resp:
            info = await resp.json()
        if "workers" in info:
            return [{"role": "supervisor", "pid": self.process.pid}] + [
                {"role": f"worker-{w['index']}", "pid": w["pid"]} for w in info["workers"]
            ]
        return [{"role": "server", "pid": self.process.pid}]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(p) or 0.0 for p in pids)


async def _ask_windows(clients: list[Client], t0: float, t1: float) -> list[list[float] | None]:
    loop = asyncio.get_running_loop()

    def ask(client: Client) -> list[float] | None:
        client.conn.send(("window", t0, t1))
        if not client.conn.poll(30):
            return None
        kind, value = client.conn.recv()
        return value if kind == "window" else None

    return list(await asyncio.gather(*(loop.run_in_executor(None, ask, c) for c in clients)))


@dataclass(frozen=True)
class RampCase:
    """One ramp: the server's worker count, the stream's resolution and the clients' camera."""

    workers: str
    resolution: str
    camera: str


async def ramp(
    plan: CapacityPlan, settings: Settings, case: RampCase, repo: Path, log_dir: Path, detect: Detect | None
) -> dict[str, Any]:
    workers, resolution = case.workers, case.resolution
    size = RESOLUTIONS[resolution]
    photo, face = client_photos(repo)
    ok, png = cv2.imencode(".png", photo)
    camera = camera_picture(face, size)
    kps = camera_points(case.camera, camera, detect)
    server_log = log_dir / f"capacity-server-w{workers}-{resolution}-{case.camera}.log"
    server = ServerUnderTest(settings, workers, server_log)
    context = multiprocessing.get_context("spawn")
    clients: list[Client] = []
    steps: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_ready(http)
            fails = 0
            for n in range(1, plan.max_sessions + 1):
                parent, child = context.Pipe()
                process = context.Process(
                    target=client_main,
                    args=(server.base, png.tobytes(), camera, child, str(repo), case.camera, kps),
                    daemon=True,
                )
                process.start()
                clients.append(Client(process, parent))
                if not parent.poll(90) or parent.recv()[0] != "ready":
                    steps.append({"sessions": n, "ok": False, "error": "a client could not connect"})
                    break
                await asyncio.sleep(SETTLE_S)
                procs = await server.processes(http)
                server_pids = [p["pid"] for p in procs]
                client_pids = [c.process.pid for c in clients if c.process.pid is not None]
                t0, cpu0, ccpu0 = time.monotonic(), _cpu(server_pids), _cpu(client_pids)
                await asyncio.sleep(plan.step_s)
                t1, cpu1, ccpu1 = time.monotonic(), _cpu(server_pids), _cpu(client_pids)
                windows = await _ask_windows(clients, t0, t1)
                sessions = [judge_session(w or [], t1 - t0) for w in windows]
                ok = all(
                    s["fps"] >= MIN_FPS and abs(s["latency_growth_ms"]) <= FLAT_MS for s in sessions
                ) and all(w is not None for w in windows)
                server_cores = (cpu1 - cpu0) / (t1 - t0)
                step = {
                    "sessions": n,
                    "ok": ok,
                    "min_fps": min(s["fps"] for s in sessions),
                    # Frames delivered per second over all sessions: what a contended machine
                    # still shows when no step passes.
                    "aggregate_fps": round(sum(s["fps"] for s in sessions), 1),
                    "latency_p50_ms": round(statistics.median(s["latency_p50_ms"] for s in sessions), 1),
                    "latency_p95_ms": max(s["latency_p95_ms"] for s in sessions),
                    "server_cores": round(server_cores, 3),
                    "server_cores_per_session": round(server_cores / n, 3),
                    "client_cores": round((ccpu1 - ccpu0) / (t1 - t0), 3),
                    "rss_mb": {p["role"]: round((rss_bytes(p["pid"]) or 0) / 2**20) for p in procs},
                    "per_session": sessions,
                }
                steps.append(step)
                log.warning(
                    "capacity w=%s %s %s: %d sessions, min fps %.1f, server %.2f cores, %s",
                    workers,
                    resolution,
                    case.camera,
                    n,
                    step["min_fps"],
                    server_cores,
                    "ok" if ok else "FAIL",
                )
                fails = 0 if ok else fails + 1
                if fails >= FAILS_TO_STOP and not plan.ramp_all:
                    break
    finally:
        for client in clients:
            with contextlib.suppress(OSError):
                client.conn.send(("stop",))
        for client in clients:
            client.process.join(10)
            if client.process.is_alive():
                client.process.kill()
                client.process.join()
        server.stop()
    passing = [s for s in steps if s.get("ok")]
    best = max(passing, key=lambda s: s["sessions"]) if passing else None
    measured = [s for s in steps if "aggregate_fps" in s]
    peak = max(measured, key=lambda s: s["aggregate_fps"]) if measured else None
    return {
        "workers": workers,
        "resolution": resolution,
        "camera": case.camera,
        "max_sessions": best["sessions"] if best else 0,
        "peak_aggregate_fps": peak["aggregate_fps"] if peak else 0.0,
        "peak_at_sessions": peak["sessions"] if peak else 0,
        "at_max": {k: v for k, v in best.items() if k != "per_session"} if best else None,
        "steps": steps,
    }


def run_capacity(
    plan: CapacityPlan, settings: Settings, repo_data: Path, detect: Detect | None = None
) -> dict[str, Any]:
    """Every ramp of ``plan``; ``detect`` (a face detector) places the talking camera's face."""
    check_cameras(list(plan.cameras))  # refuse a typo before any server starts
    repo = repo_data.parent.parent
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    # The cameras innermost: a still and a talking ramp follow each other, so drift in the
    # machine's load hits both alike.
    cases = [
        RampCase(workers, resolution, camera)
        for resolution in plan.resolutions
        for workers in plan.workers
        for camera in plan.cameras
    ]
    results = [asyncio.run(ramp(plan, settings, case, repo, log_dir, detect)) for case in cases]
    return {
        "criteria": {"min_fps": MIN_FPS, "latency_flat_ms": FLAT_MS, "step_s": plan.step_s},
        "cameras": list(plan.cameras),
        "cpus": len(os.sched_getaffinity(0)),
        "summary": [{k: r[k] for k in SUMMARY_KEYS} | {"at_max": r["at_max"]} for r in results],
        "runs": results,
        "note": "client processes run on the same machine as the server and compete for its cores",
    }
