"""Start the real ``python -m swaprtc serve`` process on a free port (embedded engine, test models)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import models_cache_dir, wait_listening

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait: the exit code of a graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def server_process(args: Sequence[str] = (), env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """Needs the embedded models in the test cache (request the ``face_landmark_path`` and
    ``retinaface_session`` fixtures first so they are fetched)."""
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"swaprtc-test-{port}.log"
    full_env = {
        **os.environ,
        "SWAPRTC_MODELS_DIR": str(models_cache_dir()),
        "SWAPRTC_ENGINE": "embedded",
        "SWAPRTC_AUTO_DOWNLOAD": "false",
        "SWAPRTC_ICE_LOOPBACK": "true",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swaprtc", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_listening(port, proc, log_path)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_path.unlink(missing_ok=True)
