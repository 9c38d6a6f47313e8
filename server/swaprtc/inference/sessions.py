"""The one place ONNX Runtime sessions are created: execution providers and their options.

Every model (neural stages, embedded engine, stand-ins in the benchmark) is loaded by
``create_session`` so that GPU options apply everywhere alike: CUDA graphs for fixed-shape models,
TensorRT engine and timing caches kept in the models volume, and a CPU floor. What really runs is
read back from the session (``session.get_providers()``, ``get_provider_options()``): onnxruntime-gpu
lists CUDA as available even on a machine without a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import onnxruntime as ort

from swaprtc.errors import ModelError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# Providers that run on an accelerator: engine selection and the fp16 choice ask this one list.
GPU_PROVIDERS = (TENSORRT, CUDA, "CoreMLExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider")
# Providers whose tensors live in CUDA device memory (IO binding allocates its buffers there).
CUDA_DEVICE_PROVIDERS = (TENSORRT, CUDA)


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions are made. Built from Settings by ``runtime_options``; plain data otherwise."""

    providers: tuple[str, ...] = (CPU,)
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    sequential: bool = False
    cuda_graph: bool = False  # ask the CUDA provider to capture a CUDA graph (fixed shapes only)
    trt_cache_dir: Path | None = None  # TensorRT engine + timing caches; None = no cache
    trt_fp16: bool = False
    device_id: int = 0
    quiet: bool = False  # only errors from onnxruntime's own logger

    def cpu_only(self) -> RuntimeOptions:
        return replace(self, providers=(CPU,), cuda_graph=False)


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> list[str]:
    """Preferred providers this onnxruntime build offers, in preference order; CPU as the floor."""
    chosen = [p for p in preferred if p in available]
    if CPU not in chosen and CPU in available:
        chosen.append(CPU)
    return chosen


def provider_list(options: RuntimeOptions, available: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """(provider, provider options) pairs for ``InferenceSession(providers=...)``."""
    out: list[tuple[str, dict[str, str]]] = []
    for name in choose_providers(options.providers, available):
        opts: dict[str, str] = {}
        if name == CUDA:
            opts["device_id"] = str(options.device_id)
            if options.cuda_graph:
                opts["enable_cuda_graph"] = "1"
        elif name == TENSORRT:
            opts["device_id"] = str(options.device_id)
            if options.trt_fp16:
                opts["trt_fp16_enable"] = "1"
            if options.trt_cache_dir is not None:
                # Building a TensorRT engine takes minutes; cached, a restart takes seconds.
                cache = str(options.trt_cache_dir)
                opts.update(
                    trt_engine_cache_enable="1",
                    trt_engine_cache_path=cache,
                    trt_timing_cache_enable="1",
                    trt_timing_cache_path=cache,
                )
            if options.cuda_graph:
                opts["trt_cuda_graph_enable"] = "1"
        out.append((name, opts))
    return out


def _session_options(options: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    if options.intra_op_threads:
        so.intra_op_num_threads = options.intra_op_threads
    if options.inter_op_threads:
        so.inter_op_num_threads = options.inter_op_threads
    if options.sequential:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if options.quiet:
        so.log_severity_level = 3
    return so


def create_session(
    model: Path | str | bytes, options: RuntimeOptions, label: str | None = None
) -> ort.InferenceSession:
    """A session for ``model`` (file or bytes). A CUDA graph that onnxruntime refuses (some node
    left on the CPU, dynamic shapes) is dropped with a log line instead of failing the load."""
    label = label or ("an in-memory model" if isinstance(model, bytes) else str(model))
    source = model if isinstance(model, bytes) else str(model)
    available = ort.get_available_providers()
    if options.trt_cache_dir is not None and TENSORRT in options.providers and TENSORRT in available:
        try:
            options.trt_cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning(
                "TensorRT cache folder %s is not writable (%s): no engine cache", options.trt_cache_dir, exc
            )
            options = replace(options, trt_cache_dir=None)
    providers = provider_list(options, available)
    try:
        return ort.InferenceSession(source, sess_options=_session_options(options), providers=providers)
    except Exception as exc:  # ORT raises its own exception types
        if options.cuda_graph:
            log.info("%s: CUDA graph refused by onnxruntime (%s); loading without it", label, exc)
            return create_session(model, replace(options, cuda_graph=False), label)
        raise ModelError(f"onnxruntime could not load {label}: {exc}") from exc


def gpu_in_use(session: ort.InferenceSession) -> bool:
    return any(p in GPU_PROVIDERS for p in session.get_providers())


def cuda_device_in_use(session: ort.InferenceSession) -> bool:
    """Whether the session's first provider keeps tensors in CUDA memory (read back, not planned)."""
    providers = session.get_providers()
    return bool(providers) and providers[0] in CUDA_DEVICE_PROVIDERS


def cuda_graph_in_use(session: ort.InferenceSession) -> bool:
    """Whether the session really runs with a CUDA graph (the options it was created with, read back)."""
    used = session.get_provider_options()
    return any(
        used.get(p, {}).get(key) in ("1", "True", "true")
        for p, key in ((CUDA, "enable_cuda_graph"), (TENSORRT, "trt_cuda_graph_enable"))
    )
