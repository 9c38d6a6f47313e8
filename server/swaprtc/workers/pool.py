"""The worker processes: start, watch, restart, drain. One ``WorkerPool`` per supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp

from swaprtc.errors import SwapRTCError
from swaprtc.settings import Settings
from swaprtc.workers.memory import rss_bytes
from swaprtc.workers.worker import run_worker

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0  # a first start may download and convert the embedded models
WATCH_PERIOD_S = 0.2
HEALTH_TIMEOUT_S = 2.0
DRAIN_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 30.0  # a worker that lived this long restarts without waiting


@dataclass(frozen=True)
class Load:
    """A worker's sessions: all open ones (spread evenly) and the live ones (held against capacity:
    connecting or connected; bare sessions hold no capacity, as in one process)."""

    sessions: int
    live: int


class WorkerStartError(SwapRTCError):
    code = "worker_start_failed"


@dataclass
class Worker:
    index: int
    socket_path: str
    process: BaseProcess | None = None
    client: aiohttp.ClientSession | None = None
    ready: bool = False
    restarts: int = 0
    started_at: float = 0.0
    pending: int = 0  # new sessions sent to this worker whose answer has not come back yet
    backoff_s: float = 1.0
    restarting: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def describe(self, sessions: int | None) -> dict[str, Any]:
        pid = self.pid
        return {
            "index": self.index,
            "pid": pid,
            "ready": self.ready,
            "sessions": sessions,
            "restarts": self.restarts,
            "rss_bytes": rss_bytes(pid) if pid is not None and self.alive() else None,
        }


class WorkerPool:
    def __init__(self, settings: Settings, count: int, *, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.settings = settings
        self.count = count
        self.start_timeout_s = start_timeout_s
        self.socket_dir = tempfile.mkdtemp(prefix="swaprtc-workers-")  # mode 0700: ours only
        self.workers = [Worker(i, str(Path(self.socket_dir) / f"worker-{i}.sock")) for i in range(count)]
        self.admission = asyncio.Lock()
        self.stopping = False
        self._watch: asyncio.Task[None] | None = None
        self._next = 0
        self._context = multiprocessing.get_context("spawn")

    # --- starting ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker and wait until all serve. The first one alone first: it fetches any
        missing model, so the others never download the same file at the same time."""
        try:
            await self._start_one(self.workers[0])
            await asyncio.gather(*(self._start_one(w) for w in self.workers[1:]))
        except BaseException:
            await self.stop()
            raise
        self._watch = asyncio.ensure_future(self._watch_loop())

    async def _start_one(self, worker: Worker) -> None:
        Path(worker.socket_path).unlink(missing_ok=True)
        process = self._context.Process(
            target=run_worker,
            args=(self.settings, worker.index, worker.socket_path, os.getpid()),
            name=f"swaprtc-worker-{worker.index}",
            daemon=True,  # multiprocessing ends them if the supervisor exits without draining
        )
        process.start()
        worker.process = process
        worker.started_at = time.monotonic()
        worker.client = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=worker.socket_path),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=120),
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if not process.is_alive():
                raise WorkerStartError(
                    f"worker {worker.index} exited during start-up (exit code {process.exitcode}); "
                    "see its log above"
                )
            if (
                Path(worker.socket_path).exists()
                and await self.sessions_of(worker, require_ready=False) is not None
            ):
                worker.ready = True
                log.info("worker %d ready (pid %d)", worker.index, process.pid)
                return
            await asyncio.sleep(0.1)
        raise WorkerStartError(f"worker {worker.index} did not start within {self.start_timeout_s:.0f} s")

    # --- watching and restarting ---------------------------------------------------------------
    async def _watch_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(WATCH_PERIOD_S)
            for worker in self.workers:
                if worker.ready and not worker.alive() and not self.stopping:
                    self._on_death(worker)

    def _on_death(self, worker: Worker) -> None:
        worker.ready = False
        code = worker.process.exitcode if worker.process is not None else None
        log.warning(
            "worker %d (pid %s) exited with code %s: its sessions ended; restarting",
            worker.index,
            worker.pid,
            code,
        )
        if time.monotonic() - worker.started_at > STABLE_AFTER_S:
            worker.backoff_s = 1.0
        worker.restarting = asyncio.ensure_future(self._restart(worker))

    async def _restart(self, worker: Worker) -> None:
        while not self.stopping:
            await self._retire(worker)
            worker.restarts += 1
            try:
                await self._start_one(worker)
                return
            except WorkerStartError as exc:
                log.error("%s; retrying in %.0f s", exc.message, worker.backoff_s)
            await asyncio.sleep(worker.backoff_s)
            worker.backoff_s = min(MAX_BACKOFF_S, worker.backoff_s * 2)

    async def _retire(self, worker: Worker) -> None:
        if worker.client is not None:
            await worker.client.close()
            worker.client = None
        if worker.process is not None:
            if worker.process.is_alive():
                worker.process.kill()
            await asyncio.get_running_loop().run_in_executor(None, worker.process.join, 5.0)
            worker.process.close()
            worker.process = None
        Path(worker.socket_path).unlink(missing_ok=True)

    # --- asking the workers --------------------------------------------------------------------
    async def load_of(self, worker: Worker, *, require_ready: bool = True) -> Load | None:
        """The worker's sessions from its /readyz (answered 503 when the worker is full: still a
        load), None if it does not answer."""
        if worker.client is None or (require_ready and not worker.ready):
            return None
        try:
            async with worker.client.get(
                "http://worker/readyz", timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
            ) as resp:
                if resp.status not in (200, 503):
                    return None
                ready = await resp.json()
                return Load(int(ready["sessions"]), int(ready["live"]))
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
            return None

    async def sessions_of(self, worker: Worker, *, require_ready: bool = True) -> int | None:
        """The worker's open sessions, None if it does not answer."""
        load = await self.load_of(worker, require_ready=require_ready)
        return None if load is None else load.sessions

    async def loads(self) -> dict[int, Load]:
        """Every answering worker's load; admissions in flight count as open and live (they are
        about to create or connect a session)."""
        found = await asyncio.gather(*(self.load_of(w) for w in self.workers))
        return {
            w.index: Load(load.sessions + w.pending, load.live + w.pending)
            for w, load in zip(self.workers, found, strict=True)
            if load is not None
        }

    def get(self, index: int | None) -> Worker | None:
        if index is None or not 0 <= index < len(self.workers):
            return None
        return self.workers[index]

    def any_ready(self) -> Worker | None:
        """A ready worker, taken in turn, for requests not about a session (page, info)."""
        for _ in range(len(self.workers)):
            worker = self.workers[self._next % len(self.workers)]
            self._next += 1
            if worker.ready:
                return worker
        return None

    async def describe(self) -> list[dict[str, Any]]:
        counts = await asyncio.gather(*(self.sessions_of(w) for w in self.workers))
        return [w.describe(n) for w, n in zip(self.workers, counts, strict=True)]

    # --- stopping ------------------------------------------------------------------------------
    async def stop(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Drain: SIGTERM every worker (each closes its sessions), SIGKILL what is left after
        ``timeout_s``, then remove the sockets."""
        self.stopping = True
        for task in (self._watch, *(w.restarting for w in self.workers)):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for worker in self.workers:
            worker.ready = False
            if worker.alive() and worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(w.alive() for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for worker in self.workers:
            if worker.alive():
                log.warning("worker %d did not drain within %.0f s: killed", worker.index, timeout_s)
            await self._retire(worker)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
