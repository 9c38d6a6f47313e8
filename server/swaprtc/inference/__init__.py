"""Model calls behind one small interface (``ModelRunner``): local ONNX Runtime sessions, a remote
inference server, and the cross-session batching scheduler all look the same to the pipeline."""
