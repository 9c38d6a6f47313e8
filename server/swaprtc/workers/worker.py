"""One worker process: loads the engine once and serves the app on a private unix socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from swaprtc.errors import SwapRTCError
from swaprtc.settings import Settings
from swaprtc.workers.routing import session_prefix

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0
EXIT_START_FAILED = 3


async def _watch_parent(parent_pid: int) -> None:
    """Shut down like on SIGTERM when the supervisor is gone (killed without draining us)."""
    while True:
        await asyncio.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            log.warning("the supervisor is gone: shutting down")
            os.kill(os.getpid(), signal.SIGTERM)
            return


def run_worker(settings: Settings, index: int, socket_path: str, parent_pid: int) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s",
    )
    from swaprtc.factory import build_engine
    from swaprtc.rtc.app import configure_process, create_app

    configure_process(settings)
    try:
        engine = build_engine(settings)
    except SwapRTCError as exc:
        print(f"swaprtc worker {index}: error [{exc.code}]: {exc.message}", file=sys.stderr)
        sys.exit(EXIT_START_FAILED)
    log.info("engine: %s", json.dumps(engine.describe(), default=str))
    app = create_app(settings, engine, session_prefix=session_prefix(index))
    watcher: list[asyncio.Task[None]] = []

    async def start_watch(app: web.Application) -> None:
        watcher.append(asyncio.ensure_future(_watch_parent(parent_pid)))

    async def stop_watch(app: web.Application) -> None:
        for task in watcher:
            task.cancel()

    app.on_startup.append(start_watch)
    app.on_cleanup.append(stop_watch)
    Path(socket_path).unlink(missing_ok=True)
    # The supervisor logs every request it routes; workers do not log them twice.
    web.run_app(app, path=socket_path, print=None, shutdown_timeout=5.0, handle_signals=True, access_log=None)
