"""Model manager: manifest, download, verification and shared ONNX Runtime sessions."""

from swaprtc.models.manifest import EMBEDDED, Manifest, ModelEntry
from swaprtc.models.store import ModelStore

__all__ = ["EMBEDDED", "Manifest", "ModelEntry", "ModelStore"]
