"""ICE configuration: STUN/TURN server strings and the loopback host-candidate patch."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from swaprtc.errors import SwapRTCError

log = logging.getLogger(__name__)

SCHEMES = ("stun", "stuns", "turn", "turns")


class BadIceServerError(SwapRTCError):
    code = "bad_ice_server"


@dataclass(frozen=True)
class IceServer:
    url: str  # scheme:host:port[?transport=...]
    username: str | None = None
    credential: str | None = None

    def for_browser(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"urls": self.url}
        if self.username is not None:
            entry["username"] = self.username
            entry["credential"] = self.credential or ""
        return entry

    def for_aiortc(self) -> RTCIceServer:
        return RTCIceServer(urls=self.url, username=self.username, credential=self.credential)


def parse_ice_server(text: str) -> IceServer:
    """``stun:host:port``, ``turn:user:pass@host:port[?transport=tcp]``, ``turns:...``."""
    scheme, sep, rest = text.strip().partition(":")
    if not sep or scheme.lower() not in SCHEMES or not rest:
        raise BadIceServerError(
            f"bad ICE server {text!r}: expected stun:host:port or turn:user:pass@host:port"
        )
    scheme = scheme.lower()
    creds, at, hostpart = rest.rpartition("@")
    if not at:
        hostpart, creds = rest, ""
    if not hostpart or hostpart.startswith(":"):
        raise BadIceServerError(f"bad ICE server {text!r}: missing host")
    if scheme.startswith("turn"):
        user, colon, password = creds.partition(":")
        if not (at and colon and user):
            raise BadIceServerError(f"bad TURN server {text!r}: expected {scheme}:user:pass@host:port")
        return IceServer(f"{scheme}:{hostpart}", user, password)
    if at:
        raise BadIceServerError(f"bad STUN server {text!r}: STUN takes no credentials")
    return IceServer(f"{scheme}:{hostpart}")


def parse_ice_servers(entries: Iterable[str]) -> list[IceServer]:
    servers = [parse_ice_server(e) for e in entries if e.strip()]
    stuns = [s for s in servers if s.url.startswith("stun")]
    turns = [s for s in servers if s.url.startswith("turn")]
    if len(stuns) > 1 or len(turns) > 1:
        log.warning("aiortc uses only the first STUN and the first TURN server; the browser gets all")
    return servers


def rtc_configuration(servers: Iterable[IceServer]) -> RTCConfiguration:
    """Explicit list, never aiortc's default public STUN server (a 5 s stall where UDP is blocked)."""
    return RTCConfiguration(iceServers=[s.for_aiortc() for s in servers])


def enable_loopback_candidates() -> bool:
    """Patch aioice so host candidates also include 127.0.0.1.

    aioice's ``get_host_addresses`` skips loopback, so where the only network is loopback (a
    network namespace, a sandbox) no candidate pair exists and nothing connects. This wraps it
    once per process (``--ice-loopback`` / ``SWAPRTC_ICE_LOOPBACK``); Chromium also needs
    ``--allow-loopback-in-peer-connection`` to use such a candidate. Returns True if it patched.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "swaprtc_loopback", False):
        return False

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    get_host_addresses.swaprtc_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses
    log.info("ICE: offering 127.0.0.1 host candidates (loopback patch)")
    return True
