"""Source image upload: sniff the format, check size limits from the header, decode.

Formats are recognised by their magic bytes, not by the declared content type. Pixel limits are
checked from the header before any decode where the header gives the size (a small file can
declare a huge image), and again after decoding.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from swaprtc.errors import BadImageError, SwapRTCError, UnsupportedFormatError

SUPPORTED = ("JPEG", "PNG", "WebP", "BMP")
SUPPORTED_TEXT = ", ".join(SUPPORTED)


class TooLargeError(SwapRTCError):
    code = "too_large"
    http_status = 413


class MissingImageError(SwapRTCError):
    code = "missing_image"


def sniff_format(data: bytes) -> str:
    """``jpeg`` | ``png`` | ``webp`` | ``bmp``; raises for known unsupported formats and garbage."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM") and len(data) >= 26:
        return "bmp"
    other = _known_unsupported(data)
    if other:
        raise UnsupportedFormatError(f"{other} images are not supported; use {SUPPORTED_TEXT}")
    raise BadImageError(f"the upload is not an image (supported formats: {SUPPORTED_TEXT})")


def _known_unsupported(data: bytes) -> str | None:
    head = data[:512].lstrip().lower()
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"):
            return "HEIC"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    if data.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return "JPEG XL"
    if data.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    if data.startswith(b"8BPS"):
        return "PSD"
    return None


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read from the header, or None where it cannot be read cheaply."""
    try:
        if fmt == "png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if fmt == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if fmt == "webp":
            return _webp_size(data)
        if fmt == "jpeg":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xDA)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooLargeError(
            f"the image has {width}×{height} = {width * height} pixels; the limit is {max_pixels}",
            code="too_many_pixels",
        )


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Validate and decode an uploaded image to a BGR uint8 array."""
    if not data:
        raise MissingImageError("no image in the request")
    fmt = sniff_format(data)
    size = header_size(data, fmt)
    if size is not None:
        check_pixels(*size, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise BadImageError(f"the {fmt.upper()} image could not be decoded (damaged or truncated?)")
    check_pixels(image.shape[1], image.shape[0], max_pixels)
    return image
