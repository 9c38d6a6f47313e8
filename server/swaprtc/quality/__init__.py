"""Swap quality judged by an independent face recognizer (``swaprtc bench --suite quality``).

Needs the optional ``quality`` extra (dlib-bin, face-recognition-models); the serving path never
imports this package.
"""
