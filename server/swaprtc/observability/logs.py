"""Log output: plain text for a terminal, or one JSON object per line for a log pipeline.

The session a log line belongs to travels in a context variable (``session_context``), so code
deep in the request or the session's tasks logs without passing ids around; the JSON formatter
adds it as ``"session"``. Only the id's first 8 characters are logged: the full id lets its holder
upload to the session. No face data is ever logged (photos, thumbnails, embeddings): log messages
carry counts and codes only.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

SESSION_ID_CHARS = 8
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_session: contextvars.ContextVar[str | None] = contextvars.ContextVar("swaprtc_session", default=None)


def set_session(session_id: str | None) -> None:
    """Mark the current task (and tasks it starts from now on) as working for this session."""
    _session.set(session_id[:SESSION_ID_CHARS] if session_id else None)


@contextlib.contextmanager
def session_context(session_id: str | None) -> Iterator[None]:
    token = _session.set(session_id[:SESSION_ID_CHARS] if session_id else None)
    try:
        yield
    finally:
        _session.reset(token)


def current_session() -> str | None:
    return _session.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, session, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        session = getattr(record, "session", None) or _session.get()
        if session:
            entry["session"] = session
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str) -> None:
    """Root logging for the ``swaprtc`` command: ``fmt`` is "text" or "json"."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
