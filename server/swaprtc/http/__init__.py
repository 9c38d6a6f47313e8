"""Reusable HTTP hardening for every aiohttp front of swaprtc (the single-process app and the
multi-worker supervisor): JSON errors, request body and JSON limits, access token, Origin check,
per-client rate limits, security headers, and a server runner with read timeouts."""
