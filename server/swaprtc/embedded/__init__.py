"""The embedded engine: mesh-based face swap on CPU from small permissively licensed models."""
