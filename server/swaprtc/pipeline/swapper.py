"""InSwapper-128: swaps the identity of an aligned 128 crop to a source identity latent.

The model expects ``source`` = (normed ArcFace embedding @ emap) / norm. ``emap`` is the last
initializer of the ONNX graph; onnxruntime drops it because no node uses it, so it is read from the
file itself, once, by a minimal protobuf walk (see ``read_last_initializer``). That keeps the ``onnx``
package out of the runtime dependencies and never materialises the other ~550 MB of weights in
Python: the file is memory-mapped and only the emap bytes are copied.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from swaprtc.errors import ModelError
from swaprtc.inference.local import as_runner
from swaprtc.inference.runner import ModelRunner

# ONNX protobuf field numbers (onnx/onnx.proto3).
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_T_DIMS, _T_DATA_TYPE, _T_FLOAT_DATA, _T_INT32_DATA, _T_RAW_DATA = 1, 2, 4, 5, 9
_T_DOUBLE_DATA, _T_DATA_LOCATION = 10, 14
_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """Yield (field, wire_type, value_or_(start, end)) for one protobuf message's bytes."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 1:
            yield field, wire, (pos, pos + 8)
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield field, wire, (pos, pos + length)
            pos += length
        elif wire == 5:
            yield field, wire, (pos, pos + 4)
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _repeated_varints(buf: memoryview, wire: int, value: Any) -> list[int]:
    """A repeated integer field: one varint (unpacked) or a length-delimited run (packed)."""
    if wire == 0:
        return [int(value)]
    start, end = value
    out: list[int] = []
    pos = start
    while pos < end:
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _tensor(buf: memoryview, start: int, end: int) -> np.ndarray:
    dims: list[int] = []
    dtype_code = 0
    raw: bytes | None = None
    floats: list[bytes] = []
    ints: list[int] = []
    for field, wire, value in _fields(buf, start, end):
        if field == _T_DIMS:
            dims.extend(_repeated_varints(buf, wire, value))
        elif field == _T_DATA_TYPE:
            dtype_code = int(value)
        elif field == _T_RAW_DATA:
            s, e = value
            raw = bytes(buf[s:e])
        elif field in (_T_FLOAT_DATA, _T_DOUBLE_DATA):
            s, e = value
            floats.append(bytes(buf[s:e]))
        elif field == _T_INT32_DATA:
            ints.extend(_repeated_varints(buf, wire, value))
        elif field == _T_DATA_LOCATION and value == 1:
            raise ValueError("emap is stored as external data, which is not supported")
    if dtype_code not in _DTYPES:
        raise ValueError(f"unsupported initializer data type {dtype_code}")
    dtype = _DTYPES[dtype_code]
    if raw is not None:
        arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    elif dtype_code == 10:  # float16 bit patterns live in int32_data
        arr = np.asarray(ints, dtype=np.uint16).view(np.float16)
    elif dtype_code == 11:
        arr = np.frombuffer(b"".join(floats), dtype="<f8")
    else:
        arr = np.frombuffer(b"".join(floats), dtype="<f4")
    return arr.astype(np.float32).reshape(dims)


def read_last_initializer(model: str | Path | bytes) -> np.ndarray:
    """The last ``graph.initializer`` of an ONNX model file (or its bytes), as float32."""
    if isinstance(model, bytes | bytearray):
        return _last_initializer(memoryview(model))
    with open(model, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            return _last_initializer(view)
        finally:
            view.release()


def _last_initializer(buf: memoryview) -> np.ndarray:
    last: tuple[int, int] | None = None
    for field, wire, value in _fields(buf, 0, len(buf)):
        if field == _MODEL_GRAPH and wire == 2:
            gs, ge = value
            for gfield, gwire, gvalue in _fields(buf, gs, ge):
                if gfield == _GRAPH_INITIALIZER and gwire == 2:
                    last = gvalue
    if last is None:
        raise ValueError("model has no graph initializers")
    return _tensor(buf, *last)


def load_emap(model: str | Path | bytes) -> np.ndarray:
    """Read and check InSwapper's [512, 512] identity map."""
    try:
        emap = read_last_initializer(model)
    except (OSError, ValueError, IndexError) as exc:
        raise ModelError(f"cannot read emap from the InSwapper model: {exc}") from exc
    if emap.ndim != 2 or emap.shape[0] != emap.shape[1]:
        raise ModelError(f"InSwapper emap must be square, got shape {emap.shape}")
    return np.ascontiguousarray(emap, dtype=np.float32)


def identity_latent(embedding: np.ndarray, emap: np.ndarray) -> np.ndarray:
    """(1, D) source latent: (normed embedding @ emap) / norm."""
    emb = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
    emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
    latent = emb @ emap
    return latent / max(float(np.linalg.norm(latent)), 1e-12)


def blend_latents(source: np.ndarray, target: np.ndarray, strength: float) -> np.ndarray:
    """Mix source and target identity latents, then renormalise. strength 1 = source only."""
    s = float(np.clip(strength, 0.0, 1.0))
    mixed = s * source.reshape(1, -1) + (1.0 - s) * target.reshape(1, -1)
    return (mixed / max(float(np.linalg.norm(mixed)), 1e-12)).astype(np.float32)


class InSwapper:
    """Runs the swap on aligned crops. ``emap`` is read once by the caller (``load_emap``)."""

    def __init__(self, runner: ModelRunner | ort.InferenceSession, emap: np.ndarray) -> None:
        self.runner = as_runner(runner)
        self.emap = np.ascontiguousarray(emap, dtype=np.float32)
        inputs = self.runner.inputs
        # The image input is the 4-D one, the identity input the 2-D one; names differ between exports.
        image = [i for i in inputs if i.rank == 4]
        ident = [i for i in inputs if i.rank == 2]
        if len(image) != 1 or len(ident) != 1:
            raise ModelError("InSwapper model must take one image [1,3,S,S] and one latent [1,D] input")
        self.image_input, self.latent_input = image[0], ident[0]
        self.size = self.image_input.spatial_size(default=128)

    @classmethod
    def from_file(cls, path: str | Path, runner: ModelRunner | ort.InferenceSession) -> InSwapper:
        return cls(runner, load_emap(path))

    def latent(self, embedding: np.ndarray) -> np.ndarray:
        return identity_latent(embedding, self.emap)

    def feeds(self, crops: list[np.ndarray], latents: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The model inputs for aligned BGR uint8 crops and their (1, D) latents, stacked."""
        blob = (np.stack(crops)[..., ::-1].astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
        latent = np.concatenate([np.asarray(v, dtype=np.float32).reshape(1, -1) for v in latents])
        return {
            self.image_input.name: np.ascontiguousarray(blob, dtype=self.image_input.dtype),
            self.latent_input.name: np.ascontiguousarray(latent, dtype=self.latent_input.dtype),
        }

    @staticmethod
    def to_crops(output: np.ndarray) -> list[np.ndarray]:
        """Model output [N,3,S,S] RGB in [0,1] to N BGR uint8 crops (values outside [0,1] clipped)."""
        rgb = np.clip(np.asarray(output, dtype=np.float32).transpose(0, 2, 3, 1) * 255.0, 0, 255)
        bgr = (rgb + 0.5).astype(np.uint8)[..., ::-1]
        return [np.ascontiguousarray(c) for c in bgr]

    def swap_many(self, crops: list[np.ndarray], latents: list[np.ndarray]) -> list[np.ndarray]:
        """Swap each crop to its latent, in calls of at most the runner's batch limit."""
        step = max(1, self.runner.max_batch)
        out: list[np.ndarray] = []
        for i in range(0, len(crops), step):
            result = self.runner.run(self.feeds(crops[i : i + step], latents[i : i + step]))[0]
            out.extend(self.to_crops(result))
        return out

    def swap(self, crop: np.ndarray, latent: np.ndarray) -> np.ndarray:
        """Swap an aligned BGR uint8 crop (size×size) to ``latent``; returns a BGR uint8 crop."""
        return self.swap_many([crop], [latent])[0]
