"""Benchmark suites of ``swaprtc bench`` that measure whole sessions: what one session costs per
frame and step (``session_cost``), and how many sessions a server holds (``capacity``)."""
