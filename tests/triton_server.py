"""A real NVIDIA Triton Inference Server for the tests, serving a model repository written by
``swaprtc triton-repo`` through PyTriton-bound functions that run each ONNX file with ONNX Runtime.

The production repository is served by Triton's ONNX Runtime backend; the ``nvidia-pytriton`` wheel
has the tritonserver binary but only the Python backend, so here the same files, names, shapes and
``max_batch_size`` / ``dynamic_batching`` settings are bound as Python models instead. Triton's own
dynamic batcher still forms the batches, and its statistics report them.

Run with a Python that has a shared libpython (Debian's ``/usr/bin/python3.11`` in a venv with
``nvidia-pytriton``, ``onnxruntime`` and ``numpy``): this file imports nothing from swaprtc.

    python tests/triton_server.py REPO --grpc-port P --http-port P --metrics-port P
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
from tritonclient.grpc import model_config_pb2 as mc

DTYPES = {
    mc.TYPE_FP32: np.float32,
    mc.TYPE_FP16: np.float16,
    mc.TYPE_FP64: np.float64,
    mc.TYPE_INT64: np.int64,
    mc.TYPE_INT32: np.int32,
    mc.TYPE_UINT8: np.uint8,
}


def tensors(specs: Any) -> list[Tensor]:
    return [
        Tensor(name=s.name, dtype=DTYPES[s.data_type], shape=tuple(int(d) for d in s.dims)) for s in specs
    ]


def runner(session: ort.InferenceSession, names: list[str]) -> Callable[..., dict[str, np.ndarray]]:
    @batch
    def infer(**feeds: np.ndarray) -> dict[str, np.ndarray]:
        outs = session.run(names, feeds)
        return dict(zip(names, outs, strict=True))

    return infer


def bind_repository(triton: Triton, repo: Path) -> list[str]:
    bound = []
    for folder in sorted(p for p in repo.iterdir() if (p / "config.pbtxt").is_file()):
        config = text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), mc.ModelConfig())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        batching = config.max_batch_size > 0
        delay = config.dynamic_batching.max_queue_delay_microseconds if batching else 0
        triton.bind(
            model_name=config.name,
            infer_func=runner(session, [o.name for o in config.output]),
            inputs=tensors(config.input),
            outputs=tensors(config.output),
            config=ModelConfig(
                batching=batching,
                max_batch_size=max(config.max_batch_size, 1),
                batcher=DynamicBatcher(max_queue_delay_microseconds=delay),
            ),
            strict=True,
        )
        bound.append(config.name)
    return bound


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("repo", type=Path)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = TritonConfig(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        grpc_address="127.0.0.1",
        http_address="127.0.0.1",
        exit_on_error=True,
    )
    # Triton itself restricts nothing by default; PyTriton guards statistics and shared memory
    # with a generated token, which the production server would not have.
    security = TritonSecurityConfig(restricted_endpoints=[])
    with Triton(config=config, security_config=security) as triton:
        names = bind_repository(triton, args.repo)
        print("serving " + " ".join(names), flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
