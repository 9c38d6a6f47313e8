"""The ``control`` DataChannel protocol: settings, pings and source mappings in, replies out
(docs/API.md).

Pure functions of the message text and the current options, so invalid input can be tested
without a peer connection; a bad message yields an ``error`` reply, never an exception. Mapping
commands (``assign``/``unassign``) are validated here and carried out by the session, which owns
the sources and the people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from swaprtc.http.body import BadJsonError, parse_json
from swaprtc.types import SwapOptions

BOOL_KEYS = ("many_faces", "enhance", "mouth_mask", "color_correction")
UNIT_KEYS = ("strength", "enhance_blend", "mouth_mask_blur", "mouth_mask_padding", "shape")  # numbers 0..1
MAX_ENHANCE_EVERY = 30


@dataclass(frozen=True)
class Assign:
    source: str
    x: float  # point in the output video, 0..1 from the left
    y: float  # 0..1 from the top


@dataclass(frozen=True)
class Unassign:
    person: int


@dataclass(frozen=True)
class ControlResult:
    options: SwapOptions
    show_stats: bool
    replies: tuple[dict[str, Any], ...] = ()
    command: Assign | Unassign | None = None


def _unit(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok and 0.0 <= value <= 1.0 else None  # type: ignore[operator, arg-type]


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def handle_message(text: str | bytes, options: SwapOptions, show_stats: bool) -> ControlResult:
    unchanged = ControlResult(options, show_stats)
    try:
        # Depth-checked: a deeply nested message would raise RecursionError in the channel's
        # receive path instead of getting an error reply.
        msg = parse_json(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    except BadJsonError:
        return replace(unchanged, replies=(error("bad_json", "control messages are JSON objects"),))
    if not isinstance(msg, dict):
        return replace(unchanged, replies=(error("bad_message", "control messages are JSON objects"),))
    kind = msg.get("type")
    if kind == "ping":
        return replace(unchanged, replies=({"type": "pong", "t": msg.get("t")},))
    if kind == "settings":
        return _settings(msg, options, show_stats)
    if kind == "assign":
        source, x, y = msg.get("source"), _unit(msg.get("x")), _unit(msg.get("y"))
        if not isinstance(source, str) or not source or x is None or y is None:
            return replace(
                unchanged,
                replies=(error("bad_message", 'assign needs "source" (a name) and "x", "y" from 0 to 1'),),
            )
        return replace(unchanged, command=Assign(source, x, y))
    if kind == "unassign":
        person = msg.get("person")
        if not isinstance(person, int) or isinstance(person, bool):
            return replace(unchanged, replies=(error("bad_message", 'unassign needs "person" (an integer)'),))
        return replace(unchanged, command=Unassign(person))
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
    for key in UNIT_KEYS:
        if key in msg:
            value = _unit(msg[key])
            if value is not None:
                changes[key] = value
            else:
                problems.append(f"{key} must be a number from 0 to 1")
    if "enhance_every" in msg:
        every = msg["enhance_every"]
        if isinstance(every, int) and not isinstance(every, bool) and 1 <= every <= MAX_ENHANCE_EVERY:
            changes["enhance_every"] = every
        else:
            problems.append(f"enhance_every must be a whole number from 1 to {MAX_ENHANCE_EVERY}")
    if "show_stats" in msg:
        if isinstance(msg["show_stats"], bool):
            show_stats = msg["show_stats"]
        else:
            problems.append("show_stats must be true or false")
    replies = (error("bad_settings", "; ".join(problems)),) if problems else ()
    # Valid keys apply even when others in the same message are rejected.
    return ControlResult(replace(options, **changes), show_stats, replies)
