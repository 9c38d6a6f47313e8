"""The ``control`` DataChannel protocol: settings and pings in, replies out (docs/API.md).

Pure functions of the message text and the current options, so invalid input can be tested
without a peer connection; a bad message yields an ``error`` reply, never an exception.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from swaprtc.types import SwapOptions

BOOL_KEYS = ("many_faces", "enhance")


@dataclass(frozen=True)
class ControlResult:
    options: SwapOptions
    show_stats: bool
    replies: tuple[dict[str, Any], ...] = ()


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def handle_message(text: str | bytes, options: SwapOptions, show_stats: bool) -> ControlResult:
    unchanged = ControlResult(options, show_stats)
    try:
        msg = json.loads(text)
    except (ValueError, TypeError):
        return replace(unchanged, replies=(error("bad_json", "control messages are JSON objects"),))
    if not isinstance(msg, dict):
        return replace(unchanged, replies=(error("bad_message", "control messages are JSON objects"),))
    kind = msg.get("type")
    if kind == "ping":
        return replace(unchanged, replies=({"type": "pong", "t": msg.get("t")},))
    if kind == "settings":
        return _settings(msg, options, show_stats)
    return replace(unchanged, replies=(error("unknown_type", f"unknown message type {kind!r}"),))


def _settings(msg: dict[str, Any], options: SwapOptions, show_stats: bool) -> ControlResult:
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key in BOOL_KEYS:
        if key in msg:
            if isinstance(msg[key], bool):
                changes[key] = msg[key]
            else:
                problems.append(f"{key} must be true or false")
    if "strength" in msg:
        value = msg["strength"]
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0.0 <= value <= 1.0
        ):
            changes["strength"] = float(value)
        else:
            problems.append("strength must be a number from 0 to 1")
    if "show_stats" in msg:
        if isinstance(msg["show_stats"], bool):
            show_stats = msg["show_stats"]
        else:
            problems.append("show_stats must be true or false")
    replies = (error("bad_settings", "; ".join(problems)),) if problems else ()
    # Valid keys apply even when others in the same message are rejected.
    return ControlResult(replace(options, **changes), show_stats, replies)
