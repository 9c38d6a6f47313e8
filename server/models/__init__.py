"""Model manager: manifest, download, verification and shared ONNX Runtime sessions."""

from server.models.manifest import EMBEDDED, Manifest, ModelEntry
from server.models.store import ModelStore

__all__ = ["EMBEDDED", "Manifest", "ModelEntry", "ModelStore"]
