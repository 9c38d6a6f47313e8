"""Source image upload: sniff the format, check the pixel limit from the header, decode.

Formats are recognised by their magic bytes, not by the declared content type. The pixel limit is
checked on the size the decoder itself reads from the header, before any pixel is decoded (a
small file can declare a huge image).
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps

from swaprtc.errors import BadImageError, UnsupportedFormatError

# The body reader's errors, with the same stable codes (413 too_large, 400 missing_image).
from swaprtc.http.body import BodyTooLargeError as TooLargeError
from swaprtc.http.body import MissingPartError as MissingImageError

SUPPORTED = ("JPEG", "PNG", "WebP", "BMP")
SUPPORTED_TEXT = ", ".join(SUPPORTED)


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


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size from the first RIFF chunk. Checked before Pillow sees a WebP: its WebP
    reader allocates the whole canvas when it opens the file."""
    try:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L" and data[20:21] == b"\x2f":
            (bits,) = struct.unpack("<I", data[21:25])
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X" and len(data) >= 30:
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    except struct.error:
        return None
    return None


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooLargeError(
            f"the image has {width}×{height} = {width * height} pixels; the limit is {max_pixels}",
            code="too_many_pixels",
        )


PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}
# What Pillow raises for damaged or truncated files of a format it recognised.
PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Validate and decode an uploaded image to a BGR uint8 array.

    Pillow reads the true size from the header (it walks JPEG markers past stray bytes, which a
    naive marker walk gives up on) and the image is decoded only when that size is within
    ``max_pixels``: a small file declaring a huge image never gets its pixels allocated.
    """
    if not data:
        raise MissingImageError("no image in the request")
    fmt = sniff_format(data)
    if fmt == "webp":
        size = _webp_size(data)
        if size is None:
            raise BadImageError("the WebP image has no readable size (damaged or truncated?)")
        check_pixels(*size, max_pixels)
    try:
        with Image.open(io.BytesIO(data), formats=[PIL_FORMATS[fmt]]) as opened:
            check_pixels(*opened.size, max_pixels)
            picture: Image.Image = opened
            # Turned as a phone meant the photo to be seen; each step copies, so only if needed.
            if opened.getexif().get(ExifTags.Base.Orientation, 1) != 1:
                picture = ImageOps.exif_transpose(picture)
            if picture.mode != "RGB":
                picture = picture.convert("RGB")
            rgb = np.asarray(picture)
    except Image.DecompressionBombError as exc:
        raise TooLargeError(f"the image is far too large: {exc}", code="too_many_pixels") from None
    except PIL_DECODE_ERRORS:
        raise BadImageError(f"the {fmt.upper()} image could not be decoded (damaged or truncated?)") from None
    if rgb.size == 0:
        raise BadImageError(f"the {fmt.upper()} image is empty")
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # one pass, contiguous (a [..., ::-1] copy is slow)
    if image.size == 0:
        raise BadImageError(f"the {fmt.upper()} image is empty")
    return image
