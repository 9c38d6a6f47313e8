"""Which worker a request belongs to: the worker index is the prefix of every session id."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from swaprtc.http.body import BadJsonError, parse_json

SESSION_ID = re.compile(r"^w(\d{1,4})\.")
# Requests that make a new session; everything else with a session id goes to that session's worker.
CREATE_PATHS = {("POST", "/api/session"), ("POST", "/api/offer")}


def session_prefix(index: int) -> str:
    """The prefix worker ``index`` puts on its session ids (``.`` is not in the token alphabet)."""
    return f"w{index}."


def worker_of(session_id: str) -> int | None:
    match = SESSION_ID.match(session_id)
    return int(match.group(1)) if match else None


def body_session_id(body: bytes, max_bytes: int = 64 * 1024) -> Any:
    """``session_id`` of a JSON offer body; None when absent or the body is not a JSON object.
    Bodies over ``max_bytes`` or nested too deep are not parsed here (on the supervisor's event
    loop): the worker they go to refuses them."""
    if len(body) > max_bytes:
        return None
    try:
        parsed = parse_json(body)
    except BadJsonError:
        return None
    return parsed.get("session_id") if isinstance(parsed, dict) else None


def request_session_id(request: web.Request, body: bytes) -> str | None:
    """The session a request is about, where the API puts it: header, query, or offer body."""
    sid = request.headers.get("X-Session-Id") or request.query.get("session")
    if not sid and request.method == "POST" and request.path == "/api/offer":
        found = body_session_id(body)
        sid = found if isinstance(found, str) else None
    return sid or None


def creates_session(request: web.Request, session_id: str | None) -> bool:
    return session_id is None and (request.method, request.path) in CREATE_PATHS
