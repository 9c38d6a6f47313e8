"""Syntax checks of an offer's security attributes, before aiortc sees them.

aiortc accepts a DTLS fingerprint of ``ZZ`` or a 5,000-character ICE ufrag and fails (or not)
much later. RFC 8839: ice-ufrag is 4-256 ice-chars, ice-pwd 22-256 (ice-char = ALPHA / DIGIT /
"+" / "/"). RFC 8122: a fingerprint is a hash function name and colon-separated hex byte pairs.
"""

from __future__ import annotations

import re

from swaprtc.errors import SwapRTCError


class BadOfferError(SwapRTCError):
    code = "bad_offer"


ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
UFRAG_LENGTH = (4, 256)
PWD_LENGTH = (22, 256)
# Digest sizes in bytes of the hash functions RFC 8122 names.
FINGERPRINT_BYTES = {
    "sha-1": 20,
    "sha-224": 28,
    "sha-256": 32,
    "sha-384": 48,
    "sha-512": 64,
    "md5": 16,
    "md2": 16,
}
HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")


def check_size(sdp: str, max_bytes: int) -> None:
    size = len(sdp.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise BadOfferError(f"the offer SDP has {size} bytes; the limit is {max_bytes}")


def check_ice_credential(name: str, value: str, lengths: tuple[int, int]) -> None:
    lo, hi = lengths
    if not lo <= len(value) <= hi or not ICE_CHARS.fullmatch(value):
        raise BadOfferError(f"invalid a={name}: {lo}-{hi} characters of A-Z a-z 0-9 + / expected")


def check_fingerprint(value: str) -> None:
    algorithm, _, digest = value.strip().partition(" ")
    size = FINGERPRINT_BYTES.get(algorithm.lower())
    pairs = digest.strip().split(":")
    if size is None or len(pairs) != size or not all(HEX_PAIR.fullmatch(p) for p in pairs):
        raise BadOfferError(
            "invalid a=fingerprint: a hash function (e.g. sha-256) and its digest as hex pairs "
            "separated by colons expected"
        )


# SDP is text (RFC 8866): no NUL or other control characters besides the line ends and tabs.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_offer_attributes(sdp: str) -> None:
    """Raise BadOfferError for control characters, or a malformed ice-ufrag, ice-pwd or
    fingerprint on any line."""
    if CONTROL_CHARS.search(sdp):
        raise BadOfferError("the offer SDP contains control characters")
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:"):
            check_ice_credential("ice-ufrag", line.removeprefix("a=ice-ufrag:"), UFRAG_LENGTH)
        elif line.startswith("a=ice-pwd:"):
            check_ice_credential("ice-pwd", line.removeprefix("a=ice-pwd:"), PWD_LENGTH)
        elif line.startswith("a=fingerprint:"):
            check_fingerprint(line.removeprefix("a=fingerprint:"))
