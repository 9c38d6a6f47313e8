"""ICE configuration: STUN/TURN server strings and the loopback host-candidate patch."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
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


class _LoopbackHostAddresses:
    """aioice's ``get_host_addresses`` plus 127.0.0.1, counting the apps that asked for it."""

    def __init__(self, original: Callable[[bool, bool], list[str]]) -> None:
        self.original = original
        self.users = 0

    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = list(self.original(use_ipv4, use_ipv6))
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses


@contextlib.contextmanager
def loopback_candidates() -> Iterator[None]:
    """While inside, aioice also offers 127.0.0.1 host candidates.

    aioice's ``get_host_addresses`` skips loopback, so where the only network is loopback (a
    network namespace, a sandbox) no candidate pair exists and nothing connects, and aioice has no
    option for it: its module function is wrapped. The app enters this once, at startup, only with
    ``--ice-loopback`` / ``SWAPRTC_ICE_LOOPBACK``, and leaves it at cleanup; the original function is
    back once the last app using it stopped (several apps in one process share one wrapper).
    Chromium also needs ``--allow-loopback-in-peer-connection`` to use such a candidate.
    """
    current = aioice.ice.get_host_addresses
    patch = current if isinstance(current, _LoopbackHostAddresses) else _LoopbackHostAddresses(current)
    if patch is not current:
        aioice.ice.get_host_addresses = patch
        log.info("ICE: offering 127.0.0.1 host candidates (loopback)")
    patch.users += 1
    try:
        yield
    finally:
        patch.users -= 1
        if patch.users == 0 and aioice.ice.get_host_addresses is patch:
            setattr(aioice.ice, "get_host_addresses", patch.original)  # noqa: B010 (typed as a def)
