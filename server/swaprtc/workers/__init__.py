"""Several worker processes behind one public port (``swaprtc serve --workers N``).

The supervisor owns the public port and TLS, routes every request about a session to the worker
whose index is in the session id, and restarts workers that die; media goes straight to the worker
that owns the peer connection. See docs/RTC.md, "Worker processes".
"""
