"""Errors with stable codes, so HTTP handlers and the CLI can report them the same way."""

from __future__ import annotations


class SwapRTCError(Exception):
    """Base error: ``code`` is stable and machine readable, the message is for people."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class BadImageError(SwapRTCError):
    code = "not_an_image"


class NoFaceError(SwapRTCError):
    code = "no_face"
    http_status = 422


class ModelError(SwapRTCError):
    """A model is missing, unverified or failed to download."""

    code = "model_error"
    http_status = 503


class UnsupportedFormatError(SwapRTCError):
    code = "unsupported_format"
    http_status = 415
