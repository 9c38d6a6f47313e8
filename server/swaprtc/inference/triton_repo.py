"""``swaprtc triton-repo OUT``: a Triton Inference Server model repository for the installed models.

Each installed neural model becomes ``OUT/<name>/config.pbtxt`` + ``OUT/<name>/1/model.onnx``. The
config's inputs and outputs are read from the ONNX file itself. ``max_batch_size`` is above 0 only
where the batch axis really is dynamic: a model whose ONNX fixes the batch at 1 gets a dynamic axis
only when the same numeric check the local runners use (a batch of 2 equals two batch-1 runs)
passes, and the repository then holds the rewritten file; otherwise it stays at 0 (no batching).
Batchable models get ``dynamic_batching`` so Triton merges calls from many workers and boxes.

InSwapper's identity map (``emap``, an initializer no node uses) cannot be read through Triton, so
a tiny ``<swapper>_emap`` model (latent = embedding @ emap) is written beside it; the client fetches
the map through it once at start and computes latents itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from swaprtc.errors import ModelError
from swaprtc.models.store import ModelStore

if TYPE_CHECKING:
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

# The neural models a repository can hold, in the order the pipeline uses them.
REPO_MODELS = (
    "retinaface_mnet025",
    "det_10g",
    "w600k_r50",
    "inswapper_128",
    "inswapper_128_fp16",
    "gfpgan_1.4",
)
SWAPPERS = ("inswapper_128", "inswapper_128_fp16")
EMAP_SUFFIX = "_emap"
EMAP_INPUT = "embedding"
EMAP_OUTPUT = "latent"
MODEL_FILE = "model.onnx"
KINDS = ("gpu", "cpu")

_TRITON_TYPES: dict[int, str] = {
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.BOOL: "TYPE_BOOL",
}


@dataclass(frozen=True)
class PixelInput:
    """How a detector's float NCHW input is made from 8-bit pixels: (pixel - mean) * scale, in the
    channel order the model wants. The repository's detectors take the pixels themselves (uint8
    NHWC, a quarter of the bytes) and do this first; the client undoes it exactly (integers and
    powers of two are exact in float32), so the model sees the very same input."""

    mean: tuple[float, float, float]
    scale: float


# By detector kind (Settings.detector): RetinaFace BGR - (104, 117, 123); SCRFD (RGB - 127.5) / 128.
PIXEL_INPUTS = {
    "retinaface": PixelInput((104.0, 117.0, 123.0), 1.0),
    "scrfd": PixelInput((127.5, 127.5, 127.5), 1.0 / 128.0),
}
DETECTOR_KINDS = {"retinaface_mnet025": "retinaface", "det_10g": "scrfd"}
PIXEL_INPUT_NAME = "pixels"

# (model bytes, largest batch) -> rewritten model bytes with a dynamic batch axis, or None when the
# numeric check fails. Supplied by the local inference code so both paths decide alike.
BatchRewriter = Callable[[bytes, int], bytes | None]


@dataclass(frozen=True)
class RepoOptions:
    max_batch: int = 16
    queue_delay_us: int = 2000  # how long Triton holds a request to batch it with others
    instances: int = 1  # model instances per GPU (or CPU) in the instance group
    kind: str = "gpu"  # gpu | cpu
    tensorrt: bool = True  # TensorRT execution accelerator in the ONNX Runtime backend
    fp16: bool = True  # TensorRT precision FP16
    trt_cache_dir: str | None = None  # engine cache inside the Triton container (restarts take seconds)
    link: bool = False  # symlink model files instead of copying (the repository inside the models folder)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelError(f"instance kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.max_batch < 1 or self.instances < 1 or self.queue_delay_us < 0:
            raise ModelError("max_batch and instances must be at least 1, queue_delay_us at least 0")


@dataclass(frozen=True)
class TensorConfig:
    name: str
    data_type: str  # Triton TYPE_*
    dims: tuple[int, ...]  # without the batch axis when the model batches; -1 = dynamic


@dataclass
class RepoModel:
    """What was written for one model."""

    name: str
    max_batch_size: int
    inputs: list[TensorConfig]
    outputs: list[TensorConfig]
    batching: str  # why max_batch_size is what it is
    source: str  # the file it came from, or what it was built from
    files: list[str] = field(default_factory=list)


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    """-1 for symbolic or unknown dimensions."""
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
        for d in value.type.tensor_type.shape.dim
    ]


def graph_io(model: onnx.ModelProto) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """Real inputs (older exports list initializers as inputs too) and outputs."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits], list(model.graph.output)


def batch_axis(model: onnx.ModelProto) -> str:
    """``dynamic`` when every input and output has a free first axis, ``fixed`` when they all
    start with 1 (the rewrite may apply), else ``none`` (e.g. SCRFD's outputs have no batch axis)."""
    inputs, outputs = graph_io(model)
    firsts = [_dims(v)[:1] for v in (*inputs, *outputs)]
    if all(f == [-1] for f in firsts):
        return "dynamic"
    if all(f == [1] for f in firsts) and len({len(_dims(v)) for v in inputs}) >= 1:
        return "fixed"
    return "none"


def tensor_configs(values: Sequence[onnx.ValueInfoProto], batched: bool) -> list[TensorConfig]:
    out = []
    for value in values:
        elem = value.type.tensor_type.elem_type
        if elem not in _TRITON_TYPES:
            raise ModelError(f"tensor {value.name!r} has an ONNX type ({elem}) Triton configs do not map")
        dims = _dims(value)
        out.append(TensorConfig(value.name, _TRITON_TYPES[elem], tuple(dims[1:] if batched else dims)))
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor_block(kind: str, tensors: list[TensorConfig]) -> list[str]:
    lines = [f"{kind} ["]
    for i, t in enumerate(tensors):
        dims = ", ".join(str(d) for d in t.dims)
        comma = "," if i < len(tensors) - 1 else ""
        lines += [
            "  {",
            f"    name: {_quote(t.name)}",
            f"    data_type: {t.data_type}",
            f"    dims: [ {dims} ]",
            f"  }}{comma}",
        ]
    return [*lines, "]"]


def config_pbtxt(model: RepoModel, options: RepoOptions) -> str:
    """Triton's text-format ModelConfig for one ONNX model."""
    lines = [
        f"name: {_quote(model.name)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {model.max_batch_size}",
        *_tensor_block("input", model.inputs),
        *_tensor_block("output", model.outputs),
    ]
    if model.max_batch_size > 0:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {options.queue_delay_us}", "}"]
    kind = "KIND_GPU" if options.kind == "gpu" else "KIND_CPU"
    lines += ["instance_group [", "  {", f"    count: {options.instances}", f"    kind: {kind}", "  }", "]"]
    if options.kind == "gpu" and options.tensorrt:
        params = [
            ("precision_mode", "FP16" if options.fp16 else "FP32"),
            ("max_workspace_size_bytes", "1073741824"),
        ]
        if options.trt_cache_dir:
            params += [("trt_engine_cache_enable", "1"), ("trt_engine_cache_path", options.trt_cache_dir)]
        lines += [
            "optimization {",
            "  execution_accelerators {",
            "    gpu_execution_accelerator: [",
            "      {",
            '        name: "tensorrt"',
            *[f"        parameters {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in params],
            "      }",
            "    ]",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def with_pixel_input(model: onnx.ModelProto, pixel: PixelInput) -> onnx.ModelProto:
    """A copy of a one-input NCHW image model that takes uint8 NHWC pixels instead."""
    inputs, _ = graph_io(model)
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ModelError(f"{model.graph.name}: a pixel input needs one NCHW image input")
    original = inputs[0]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [i for i in out.graph.input if i.name != original.name]
    del out.graph.input[:]
    n, _, h, w = list(original.type.tensor_type.shape.dim)

    def dim(d: onnx.TensorShapeProto.Dimension) -> int | str:
        return d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")

    shape = [dim(n), dim(h), dim(w), 3]
    out.graph.input.extend([helper.make_tensor_value_info(PIXEL_INPUT_NAME, TensorProto.UINT8, shape), *keep])
    names = ("swaprtc_pixels_f", "swaprtc_pixels_c", "swaprtc_pixels_s")
    prefix = [
        helper.make_node("Cast", [PIXEL_INPUT_NAME], [names[0]], to=TensorProto.FLOAT),
        helper.make_node("Sub", [names[0], "swaprtc_pixel_mean"], [names[1]]),
        helper.make_node("Mul", [names[1], "swaprtc_pixel_scale"], [names[2]]),
        helper.make_node("Transpose", [names[2]], [original.name], perm=[0, 3, 1, 2]),
    ]
    nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend([*prefix, *nodes])
    out.graph.initializer.extend(
        [
            numpy_helper.from_array(
                np.asarray(pixel.mean, np.float32).reshape(1, 1, 1, 3), "swaprtc_pixel_mean"
            ),
            numpy_helper.from_array(np.asarray(pixel.scale, np.float32), "swaprtc_pixel_scale"),
        ]
    )
    onnx.checker.check_model(out)
    return out


def emap_model(emap: np.ndarray) -> onnx.ModelProto:
    """latent = embedding @ emap, for any number of rows (the client normalises)."""
    dim = int(emap.shape[0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", [EMAP_INPUT, "emap"], [EMAP_OUTPUT])],
        "swaprtc_emap",
        [helper.make_tensor_value_info(EMAP_INPUT, TensorProto.FLOAT, ["rows", dim])],
        [helper.make_tensor_value_info(EMAP_OUTPUT, TensorProto.FLOAT, ["rows", int(emap.shape[1])])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(emap, np.float32), "emap")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="swaprtc")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _place(source: Path, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    if link:
        # Relative where it can be: a repository inside the models volume then resolves the same
        # in the swaprtc container (/app/models) and in Triton's (/models).
        src = source.resolve()
        try:
            os.symlink(os.path.relpath(src, target.parent.resolve()), target)
        except ValueError:  # another drive (Windows): absolute
            os.symlink(src, target)
    else:
        shutil.copyfile(source, target)


def _write(
    out: Path, entry: RepoModel, options: RepoOptions, data: bytes | None, source: Path | None
) -> None:
    folder = out / entry.name
    model_path = folder / "1" / MODEL_FILE
    if data is not None:
        model_path.parent.mkdir(parents=True, exist_ok=True)
        if model_path.is_symlink():
            model_path.unlink()
        model_path.write_bytes(data)
    elif source is not None:
        _place(source, model_path, options.link)
    (folder / "config.pbtxt").write_text(config_pbtxt(entry, options), encoding="utf-8")
    entry.files = [str(folder / "config.pbtxt"), str(model_path)]


def repo_entry(
    name: str, path: Path, options: RepoOptions, rewrite: BatchRewriter | None
) -> tuple[RepoModel, bytes | None]:
    """The config for one model file, plus rewritten bytes when the batch axis was made dynamic."""
    model = onnx.load(str(path), load_external_data=False)
    axis = batch_axis(model)
    data: bytes | None = None
    max_batch = 0
    if axis == "dynamic":
        max_batch, why = options.max_batch, "dynamic batch axis in the ONNX file"
    elif axis == "fixed" and rewrite is not None and options.max_batch > 1:
        data = rewrite(path.read_bytes(), options.max_batch)
        if data is not None:
            model = onnx.load_from_string(data)
            max_batch, why = (
                options.max_batch,
                "batch fixed at 1 in the file; the batch-2 check passed, axis made dynamic",
            )
        else:
            why = "batch fixed at 1 and the batch-2 check failed: stays unbatched"
    elif axis == "fixed":
        why = "batch fixed at 1 in the file"
    else:
        why = "inputs/outputs without a common batch axis"
    if name in DETECTOR_KINDS:
        model = with_pixel_input(model, PIXEL_INPUTS[DETECTOR_KINDS[name]])
        data = model.SerializeToString()
        why += "; takes uint8 NHWC pixels"
    inputs, outputs = graph_io(model)
    batched = max_batch > 0
    entry = RepoModel(
        name=name,
        max_batch_size=max_batch,
        inputs=tensor_configs(inputs, batched),
        outputs=tensor_configs(outputs, batched),
        batching=why,
        source=str(path),
    )
    return entry, data


def write_repository(
    store: ModelStore,
    out: Path,
    options: RepoOptions,
    rewrite: BatchRewriter | None = None,
    names: Sequence[str] = REPO_MODELS,
) -> list[RepoModel]:
    """Write every installed (present and verified) model of ``names`` into ``out``."""
    from swaprtc.pipeline.swapper import load_emap

    present = [n for n in names if store.available(n)]
    if not present:
        raise ModelError(
            f"none of the neural models ({', '.join(names)}) is installed in {store.models_dir}: "
            "run `swaprtc models download …` first",
            code="model_missing",
        )
    out.mkdir(parents=True, exist_ok=True)
    written: list[RepoModel] = []
    for name in present:
        path = store.path(name)
        entry, data = repo_entry(name, path, options, rewrite)
        _write(out, entry, options, data, path)
        written.append(entry)
        log.info("triton-repo: %s max_batch_size=%d (%s)", name, entry.max_batch_size, entry.batching)
        if name in SWAPPERS:
            emap = emap_model(load_emap(path))
            emap_entry = RepoModel(
                name=name + EMAP_SUFFIX,
                max_batch_size=0,
                inputs=tensor_configs(graph_io(emap)[0], False),
                outputs=tensor_configs(graph_io(emap)[1], False),
                batching="any number of rows in one call",
                source=f"emap of {path}",
            )
            _write(out, emap_entry, options, emap.SerializeToString(), None)
            written.append(emap_entry)
    return written


def checked_batch_rewrite(data: bytes, max_batch: int) -> bytes | None:
    """The local runners' rule: a dynamic batch axis only where a batch of 2 equals two batch-1 runs."""
    from swaprtc.inference.batch_axis import batch_matches, with_dynamic_batch
    from swaprtc.inference.local import OrtRunner
    from swaprtc.inference.sessions import RuntimeOptions, create_session

    rewritten = with_dynamic_batch(onnx.load_from_string(data)).SerializeToString()
    try:
        session = create_session(rewritten, RuntimeOptions(quiet=True), label="batch check")
    except ModelError:
        return None
    passed, worst = batch_matches(
        OrtRunner(session, io_binding="off", max_batch=max_batch, label="batch check")
    )
    log.info("batch-2 check: %s (worst relative difference %.2g)", "passed" if passed else "failed", worst)
    return rewritten if passed else None


def run_triton_repo(args: argparse.Namespace, settings: Settings) -> int:
    """``swaprtc triton-repo OUT``: never downloads; writes what is installed and says what it did."""
    store = ModelStore(settings.models_dir, allow_download=False)
    options = RepoOptions(
        max_batch=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        instances=args.instances,
        kind=args.kind,
        tensorrt=not args.no_tensorrt,
        fp16=not args.fp32,
        trt_cache_dir=args.trt_cache,
        link=args.link,
    )
    written = write_repository(store, Path(args.out), options, rewrite=checked_batch_rewrite)
    if args.json:
        print(json.dumps([dataclasses.asdict(m) for m in written], indent=2))
    else:
        for m in written:
            print(f"{m.name}: max_batch_size {m.max_batch_size} ({m.batching})")
        print(f"model repository written to {args.out}")
    return 0
