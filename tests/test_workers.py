"""``swaprtc serve --workers 2``: a real supervisor with two real worker processes (embedded engine)
and real aiortc clients. Sessions land on both workers, every request about a session reaches its
worker, a SIGKILLed worker ends only its own sessions and is restarted, SIGTERM drains both, and
nothing is left behind (processes, sockets, the port)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from swaprtc.settings import Settings, SettingsError
from swaprtc.workers.metrics import merge_scrapes
from swaprtc.workers.routing import session_prefix, worker_of

from tests.rtc_client import SwapClient, SyntheticCamera
from tests.server_process import ServerProcess, free_port, server_process


def jpg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture()
def supervisor(tmp_path: Path, face_landmark_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    sockets = tmp_path / "tmp"  # TMPDIR: where the supervisor puts its private socket folder
    sockets.mkdir()
    env = {
        "TMPDIR": str(sockets),
        "SWAPRTC_WORKERS": "2",
        "SWAPRTC_MAX_SESSIONS": "3",
        # Eight POST /api/session per client, then (almost) no refill: the test makes exactly nine.
        "SWAPRTC_RATE_BURST": "8",
        "SWAPRTC_RATE_SESSION_PER_MIN": "0.001",
    }
    with server_process(env=env) as server:
        yield server, sockets


async def get_json(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(kw.pop("method", "GET"), url, **kw) as resp:
        return resp.status, await resp.json()


async def frames_during(client: SwapClient, seconds: float) -> int:
    before = len(client.received)
    await asyncio.sleep(seconds)
    return len(client.received) - before


async def test_two_workers_route_restart_and_drain(
    supervisor: tuple[ServerProcess, Path], astronaut_bgr: np.ndarray, grace_bgr: np.ndarray
) -> None:
    server, sockets = supervisor
    base, proc = server.base, server.proc
    async with SwapClient(base) as a, SwapClient(base) as b, aiohttp.ClientSession() as http:
        for client in (a, b):
            await client.create_session()
            status, body = await client.upload_source(jpg(grace_bgr), "image/jpeg")
            assert status == 200, body
        # Least-loaded admission: the two sessions land on different workers.
        assert a.session_id and b.session_id
        assert {worker_of(a.session_id), worker_of(b.session_id)} == {0, 1}
        await asyncio.gather(
            a.connect(SyntheticCamera(astronaut_bgr, 15)), b.connect(SyntheticCamera(astronaut_bgr, 15))
        )
        status, info = await get_json(http, f"{base}/api/info")
        workers = {w["index"]: w for w in info["workers"]}
        assert status == 200 and set(workers) == {0, 1}
        assert all(w["ready"] and w["sessions"] == 1 and w["rss_bytes"] > 50e6 for w in workers.values())
        async with http.get(f"{base}/metrics") as resp:  # one scrape, every worker labelled
            text = await resp.text()
            assert resp.status == 200 and 'worker="0"' in text and 'worker="1"' in text, text[:500]
        status, ready = await get_json(http, f"{base}/readyz")
        assert status == 200 and ready["workers_ready"] == 2

        # Every way the API names a session reaches the worker holding it: only that worker knows
        # the session is connected (409), and only it can drop its source.
        for client in (a, b):
            sid = client.session_id
            status, body = await get_json(
                http,
                f"{base}/api/offer",
                method="POST",
                json={"sdp": "v=0", "type": "offer", "session_id": sid},
            )
            assert (status, body["error"]["code"]) == (409, "already_connected"), body
            status, body = await get_json(http, f"{base}/api/source?session={sid}", method="DELETE")
            assert (status, body) == (200, {"ok": True})
            status, body = await client.upload_source(jpg(grace_bgr), "image/jpeg")  # X-Session-Id
            assert status == 200, body
        forged = session_prefix(1) + "not-a-session"
        status, body = await get_json(
            http, f"{base}/api/source", method="DELETE", headers={"X-Session-Id": forged}
        )
        assert (status, body["error"]["code"]) == (404, "unknown_session")

        # Global admission counts live sessions only, as one process does: two bare sessions (no
        # peer connection) hold no slot, so a third real user still gets the last one of three.
        bare = []
        for _ in range(2):
            status, made = await get_json(http, f"{base}/api/session", method="POST")
            assert status == 201, made
            bare.append(made["session_id"])
        async with SwapClient(base) as c:
            await c.create_session()
            await c.connect(SyntheticCamera(astronaut_bgr, 15))
            assert await frames_during(c, 1.0) >= 1
            # Now every slot of both workers is taken: refused with 503 + Retry-After.
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503 and (await resp.json())["error"]["code"] == "full"
            async with http.post(f"{base}/api/session") as resp:
                assert resp.status == 503 and resp.headers["Retry-After"]
                assert (await resp.json())["error"]["code"] == "over_capacity"
        for sid in bare:
            await get_json(http, f"{base}/api/session", method="DELETE", headers={"X-Session-Id": sid})

        # SIGKILL the worker holding session a: a's session ends, b keeps streaming.
        victim = workers[worker_of(a.session_id) or 0]["pid"]
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(1.0)
        assert await frames_during(a, 1.5) == 0
        assert await frames_during(b, 1.5) >= 3  # 15 fps sent; a busy CI box delivers fewer
        status, body = await a.upload_source(jpg(grace_bgr), "image/jpeg")
        assert (status, body["error"]["code"]) == (404, "unknown_session")
        # ... and the killed worker is restarted, taking new sessions again.
        deadline = time.monotonic() + 40
        while True:
            _, info = await get_json(http, f"{base}/api/info")
            again = next(w for w in info["workers"] if w["index"] == worker_of(a.session_id))
            if again["ready"] and again["pid"] != victim:
                break
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.3)
        assert again["restarts"] == 1 and not pid_exists(victim)
        status, fresh = await get_json(http, f"{base}/api/session", method="POST")
        assert status == 201 and worker_of(fresh["session_id"]) == worker_of(a.session_id)
        assert await frames_during(b, 1.0) >= 2

        # Rate limits are global: the supervisor counts every POST /api/session of this client (the
        # seventh is refused before admission, which would otherwise answer 503 over_capacity);
        # each worker alone has seen only some of them.
        status, _ = await get_json(http, f"{base}/api/session", method="POST")
        assert status == 201
        async with http.post(f"{base}/api/session") as resp:
            assert resp.status == 429 and (await resp.json())["error"]["code"] == "rate_limited"

        # SIGTERM drains both workers: b's session is closed by its worker, everything exits.
        pids = [w["pid"] for w in info["workers"]]
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
    log = server.log()
    assert code == 0, log[-3000:]
    assert f"session {(b.session_id or '')[:8]} removed: shutdown" in log, log[-3000:]
    assert not any(pid_exists(p) for p in pids)
    assert not list(sockets.glob("swaprtc-workers-*"))  # the private socket folder is gone
    with socket.socket() as s:  # nothing listens on the port any more (TIME_WAIT is allowed)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(base.rsplit(":", 1)[1])))


def test_workers_setting() -> None:
    assert Settings(workers="3").worker_count() == 3
    assert Settings(workers="auto").worker_count() == len(os.sched_getaffinity(0))
    for bad in ("0", "many", "-2"):
        with pytest.raises(SettingsError):
            Settings(workers=bad)


def test_metrics_are_merged_with_a_worker_label() -> None:
    one = (
        "# HELP s_sessions Open sessions\n# TYPE s_sessions gauge\ns_sessions 2.0\n"
        '# TYPE rtt gauge\nrtt{path="a b"} 1\n'
    )
    two = "# HELP s_sessions Open sessions\n# TYPE s_sessions gauge\ns_sessions 1.0\n"
    merged = merge_scrapes({0: one, 1: two}).splitlines()
    assert merged.count("# TYPE s_sessions gauge") == 1
    assert merged.index('s_sessions{worker="0"} 2.0') + 1 == merged.index('s_sessions{worker="1"} 1.0')
    assert 'rtt{worker="0",path="a b"} 1' in merged


def test_a_worker_that_cannot_start_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    """No models and no download allowed: the first worker exits at start-up, and so does the
    supervisor, with a stable error code instead of a traceback or a half-running server."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "SWAPRTC_MODELS_DIR": str(tmp_path / "no-models"),
        "SWAPRTC_AUTO_DOWNLOAD": "false",
        "SWAPRTC_ENGINE": "embedded",
        "SWAPRTC_WORKERS": "2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "swaprtc", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "swaprtc: error [worker_start_failed]: worker 0 exited during start-up" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("swaprtc-workers-*"))
