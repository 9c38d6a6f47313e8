"""The WebRTC service: aiohttp signalling and API, aiortc peer connections, the swap track."""
