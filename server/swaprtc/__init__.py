"""swaprtc: real-time face swap over WebRTC."""

__version__ = "0.1.0"
