"""Model calls on a shared NVIDIA Triton Inference Server (``--inference-url grpc://HOST:PORT``).

``TritonRunner`` is a ModelRunner whose ``run`` is one gRPC inference request, so the worker
processes of a box, and many boxes, share GPUs and Triton's dynamic batcher merges their calls.
Only model inputs travel (aligned crops, embeddings, the detector's letterboxed image), never
frames. When Triton runs on the same host its system shared memory carries the tensors instead of
the gRPC message: whether it can is probed once at start by registering a region (Triton opens it
on registration, so a server in another host or container namespace refuses it) and the plain
gRPC path is used otherwise.

``tritonclient`` is an optional extra (``pip install 'swaprtc[triton]'``): nothing imports this
module unless ``--inference-url`` is set.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from swaprtc.errors import ModelError
from swaprtc.inference.runner import TensorSpec

if TYPE_CHECKING:
    from swaprtc.inference.loader import NeuralRunners
    from swaprtc.inference.runner import ModelRunner
    from swaprtc.inference.triton_repo import PixelInput
    from swaprtc.settings import Settings

log = logging.getLogger(__name__)

SCHEMES = ("grpc",)
SHARED_MEMORY_MODES = ("auto", "on", "off")
# A request that takes longer than this is failed by the client: the frame's swap deadline has long
# passed by then, and a hung server must not pin inference threads forever.
REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
_ALIGN = 64  # byte alignment of tensors inside a shared memory region

_NP_TO_TRITON: dict[np.dtype[Any], str] = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
}
_TRITON_TO_NP: dict[str, type[np.generic]] = {v: k.type for k, v in _NP_TO_TRITON.items()}


class InferenceServerError(ModelError):
    code = "inference_server"


def _tritonclient() -> tuple[Any, Any]:
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.utils.shared_memory as shm
    except ImportError as exc:
        raise InferenceServerError(
            "--inference-url needs the Triton client: pip install 'swaprtc[triton]' "
            f"(tritonclient[grpc]); import failed: {exc}",
            code="inference_client_missing",
        ) from exc
    return grpcclient, shm


def parse_url(url: str) -> str:
    """``grpc://host:port`` -> ``host:port`` (what tritonclient takes)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname or parts.port is None or parts.path not in ("", "/"):
        raise InferenceServerError(
            f"invalid --inference-url {url!r}: use grpc://HOST:PORT (Triton's gRPC port, 8001 by default)",
            code="bad_setting",
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}"


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


class ClientPool:
    """gRPC clients to one server, one per concurrent caller (each holds its own channel state)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.address = parse_url(url)
        self._grpc, self._shm = _tritonclient()
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    @property
    def grpc(self) -> Any:
        return self._grpc

    @property
    def shm(self) -> Any:
        return self._shm

    @contextmanager
    def client(self) -> Iterator[Any]:
        try:
            c = self._idle.get_nowait()
        except queue.Empty:
            c = self._grpc.InferenceServerClient(self.address)
            with self._lock:
                self._all.append(c)
        try:
            yield c
        finally:
            self._idle.put(c)

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for c in clients:
            try:
                c.close()
            except Exception:  # closing is best effort at shutdown
                log.debug("closing a Triton client failed", exc_info=True)


class _Region:
    """One registered system shared memory region."""

    def __init__(self, pool: ClientPool, name: str, size: int) -> None:
        self.name = name
        self.key = "/" + name
        self.size = size
        self.handle = pool.shm.create_shared_memory_region(name, self.key, size, create_only=True)
        try:
            with pool.client() as c:
                c.register_system_shared_memory(name, self.key, size)
        except Exception:
            pool.shm.destroy_shared_memory_region(self.handle)
            raise

    def release(self, pool: ClientPool) -> None:
        try:
            with pool.client() as c:
                c.unregister_system_shared_memory(self.name)
        except Exception:  # the server may be gone already; the local segment is freed anyway
            log.debug("unregistering %s failed", self.name, exc_info=True)
        pool.shm.destroy_shared_memory_region(self.handle)


class SharedMemorySlots:
    """Registered regions handed out one per in-flight request and grown on demand."""

    def __init__(self, pool: ClientPool, label: str) -> None:
        self._pool = pool
        self._prefix = f"swaprtc_{os.getpid()}_{secrets.token_hex(4)}_{label}"
        self._free: queue.SimpleQueue[_Region] = queue.SimpleQueue()
        self._all: dict[str, _Region] = {}
        self._lock = threading.Lock()
        self._count = 0
        # /dev/shm segments outlive the process unless unlinked: free them even without close().
        self._finalizer = weakref.finalize(self, SharedMemorySlots._release_all, pool, self._all)

    @contextmanager
    def slot(self, size: int) -> Iterator[_Region]:
        try:
            region: _Region | None = self._free.get_nowait()
        except queue.Empty:
            region = None
        if region is not None and region.size < size:
            self._drop(region)
            region = None
        if region is None:
            with self._lock:
                self._count += 1
                name = f"{self._prefix}_{self._count}"
            region = _Region(self._pool, name, max(size, 4096))
            with self._lock:
                self._all[name] = region
        try:
            yield region
        finally:
            self._free.put(region)

    def _drop(self, region: _Region) -> None:
        with self._lock:
            self._all.pop(region.name, None)
        region.release(self._pool)

    @staticmethod
    def _release_all(pool: ClientPool, regions: dict[str, _Region]) -> None:
        for region in list(regions.values()):
            region.release(pool)
        regions.clear()

    def close(self) -> None:
        self._finalizer()


def shared_memory_works(pool: ClientPool) -> tuple[bool, str]:
    """Register a small region: Triton opens it right away, so this fails unless it sees our /dev/shm."""
    name = f"swaprtc_{os.getpid()}_{secrets.token_hex(4)}_probe"
    try:
        region = _Region(pool, name, 4096)
    except Exception as exc:
        return False, str(exc).strip() or type(exc).__name__
    region.release(pool)
    return True, ""


@dataclass(frozen=True)
class ModelInfo:
    """What Triton says about one model: the runner's contract."""

    name: str
    version: str
    max_batch_size: int  # Triton's: 0 = the model takes no batch axis
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    platform: str


def _specs(entries: list[dict[str, Any]], batched: bool, model: str) -> list[TensorSpec]:
    out = []
    for e in entries:
        dtype = str(e.get("data_type", "")).removeprefix("TYPE_")
        if dtype not in _TRITON_TO_NP:
            raise InferenceServerError(
                f"Triton model {model!r}: tensor {e.get('name')!r} has type {dtype!r}, "
                "which swaprtc does not use"
            )
        dims = tuple(int(d) for d in e.get("dims", []))
        shape = ((-1,) if batched else ()) + dims
        out.append(
            TensorSpec(str(e["name"]), tuple(d if d > 0 else None for d in shape), _TRITON_TO_NP[dtype])
        )
    return out


def model_info(pool: ClientPool, name: str) -> ModelInfo:
    """Ready-check one model and read its configuration (clear errors when it is not there)."""
    with pool.client() as c:
        try:
            ready = c.is_model_ready(name)
        except Exception as exc:
            raise InferenceServerError(f"Triton at {pool.url}: cannot ask for model {name!r}: {exc}") from exc
        if not ready:
            try:
                index = c.get_model_repository_index(as_json=True).get("models", [])
                listed = (
                    ", ".join(f"{m.get('name')} ({m.get('state', 'unknown').lower()})" for m in index)
                    or "none"
                )
            except Exception:  # some deployments restrict the repository API
                listed = "unknown (repository index not available)"
            raise InferenceServerError(
                f"Triton at {pool.url} has no ready model {name!r} (models there: {listed}). Write the "
                "repository with `swaprtc triton-repo OUT` where the models are installed and serve "
                "OUT with Triton.",
                code="inference_model_missing",
            )
        config = c.get_model_config(name, as_json=True).get("config", {})
        meta = c.get_model_metadata(name, as_json=True)
    max_batch = int(config.get("max_batch_size", 0))
    versions = [str(v) for v in meta.get("versions", [])]
    return ModelInfo(
        name=name,
        version=max(versions, key=lambda v: int(v) if v.isdigit() else -1) if versions else "",
        max_batch_size=max_batch,
        inputs=_specs(list(config.get("input", [])), max_batch > 0, name),
        outputs=_specs(list(config.get("output", [])), max_batch > 0, name),
        platform=str(meta.get("platform", config.get("platform", config.get("backend", "")))),
    )


class TritonRunner:
    """A ModelRunner on one Triton model. Thread-safe: every call takes its own client and region."""

    def __init__(self, pool: ClientPool, info: ModelInfo, shared_memory: bool) -> None:
        self.pool = pool
        self.info = info
        self.inputs = info.inputs
        self.outputs = info.outputs
        # Triton's 0 means "no batch axis": the arrays still carry the model's leading 1.
        self.max_batch = max(1, info.max_batch_size)
        self._slots = SharedMemorySlots(pool, info.name.replace(".", "_")) if shared_memory else None
        # Output shapes per input-shape signature, learnt from the first call, so later calls can
        # place outputs in shared memory too (some models leave output dims dynamic).
        self._out_shapes: dict[tuple[tuple[int, ...], ...], list[tuple[int, ...]]] = {}
        self._calls = 0
        self._lock = threading.Lock()

    def describe(self) -> dict[str, object]:
        return {
            "runner": "triton",
            "url": self.pool.url,
            "model": self.info.name,
            "version": self.info.version,
            "platform": self.info.platform,
            "max_batch": self.max_batch,
            "shared_memory": self._slots is not None,
        }

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        arrays = {s.name: np.ascontiguousarray(feeds[s.name], dtype=s.dtype) for s in self.inputs}
        rows = next(iter(arrays.values())).shape[0] if arrays else 1
        if self.info.max_batch_size > 0 and rows > self.max_batch:
            parts = [
                self._run_once({k: v[i : i + self.max_batch] for k, v in arrays.items()})
                for i in range(0, rows, self.max_batch)
            ]
            return [np.concatenate([p[j] for p in parts]) for j in range(len(self.outputs))]
        return self._run_once(arrays)

    def _run_once(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        grpc = self.pool.grpc
        signature = tuple(a.shape for a in arrays.values())
        out_shapes = self._out_shapes.get(signature)
        with self._lock:
            self._calls += 1
        if self._slots is None:
            return self._plain(arrays, signature)
        in_bytes = sum(_aligned(a.nbytes) for a in arrays.values())
        out_bytes = (
            sum(
                _aligned(int(np.prod(s)) * np.dtype(o.dtype).itemsize)
                for s, o in zip(out_shapes, self.outputs, strict=True)
            )
            if out_shapes is not None
            else 0
        )
        with self._slots.slot(in_bytes + out_bytes) as region:
            inputs = []
            offset = 0
            for name, a in arrays.items():
                self.pool.shm.set_shared_memory_region(region.handle, [a], offset=offset)
                inp = grpc.InferInput(name, list(a.shape), _NP_TO_TRITON[a.dtype])
                inp.set_shared_memory(region.name, a.nbytes, offset=offset)
                inputs.append(inp)
                offset += _aligned(a.nbytes)
            outputs = []
            places: list[tuple[int, tuple[int, ...]]] = []
            for i, spec in enumerate(self.outputs):
                req = grpc.InferRequestedOutput(spec.name)
                if out_shapes is not None:
                    size = int(np.prod(out_shapes[i])) * np.dtype(spec.dtype).itemsize
                    req.set_shared_memory(region.name, size, offset=offset)
                    places.append((offset, out_shapes[i]))
                    offset += _aligned(size)
                outputs.append(req)
            result = self._infer(inputs, outputs)
            if out_shapes is None:
                got = [self._output(result, s) for s in self.outputs]
                self._out_shapes[signature] = [g.shape for g in got]
                return got
            return [
                np.array(self.pool.shm.get_contents_as_numpy(region.handle, spec.dtype, shape, offset=off))
                for spec, (off, shape) in zip(self.outputs, places, strict=True)
            ]

    def _plain(
        self, arrays: dict[str, np.ndarray], signature: tuple[tuple[int, ...], ...]
    ) -> list[np.ndarray]:
        grpc = self.pool.grpc
        inputs = []
        for name, a in arrays.items():
            inp = grpc.InferInput(name, list(a.shape), _NP_TO_TRITON[a.dtype])
            inp.set_data_from_numpy(a)
            inputs.append(inp)
        result = self._infer(inputs, [grpc.InferRequestedOutput(s.name) for s in self.outputs])
        return [self._output(result, s) for s in self.outputs]

    def _infer(self, inputs: list[Any], outputs: list[Any]) -> Any:
        with self.pool.client() as c:
            try:
                return c.infer(self.info.name, inputs, outputs=outputs, client_timeout=REQUEST_TIMEOUT_S)
            except Exception as exc:
                raise InferenceServerError(
                    f"Triton model {self.info.name!r} at {self.pool.url} failed: {exc}"
                ) from exc

    def _output(self, result: Any, spec: TensorSpec) -> np.ndarray:
        out = result.as_numpy(spec.name)
        if out is None:
            raise InferenceServerError(f"Triton model {self.info.name!r} returned no output {spec.name!r}")
        return np.asarray(out)

    @property
    def calls(self) -> int:
        return self._calls

    def close(self) -> None:
        if self._slots is not None:
            self._slots.close()


class PixelInputRunner:
    """The detector's float NCHW contract over a Triton model that takes uint8 NHWC pixels
    (``swaprtc triton-repo`` writes detectors so: a quarter of the bytes per call). The float
    input is turned back into the pixels it was made from, exactly, and the server's prefix makes
    the same float input again."""

    def __init__(self, inner: TritonRunner, pixel: PixelInput) -> None:
        self.inner = inner
        self.pixel = pixel
        (spec,) = inner.inputs
        n, h, w, _ = spec.shape
        self.inputs = [TensorSpec("input", (n, 3, h, w), np.float32)]
        self.outputs = inner.outputs
        self.max_batch = inner.max_batch
        self._mean = np.asarray(pixel.mean, np.float32)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        blob = np.asarray(feeds[self.inputs[0].name], np.float32)
        pixels = np.rint(blob.transpose(0, 2, 3, 1) / np.float32(self.pixel.scale) + self._mean)
        return self.inner.run({self.inner.inputs[0].name: np.clip(pixels, 0, 255).astype(np.uint8)})

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "input": "uint8 pixels"}

    def close(self) -> None:
        self.inner.close()


def takes_pixels(info: ModelInfo) -> bool:
    """A uint8 NHWC image input: the detector form ``swaprtc triton-repo`` writes."""
    return (
        len(info.inputs) == 1
        and info.inputs[0].dtype == np.uint8
        and len(info.inputs[0].shape) == 4
        and info.inputs[0].shape[3] == 3
    )


# --- what the pipeline needs from each stage's model --------------------------------------------
Check = Callable[[ModelInfo], str | None]


def _rank(spec: TensorSpec) -> int:
    return len(spec.shape)


def _image_input(spec: TensorSpec) -> bool:
    return _rank(spec) == 4 and spec.shape[1] in (3, None)


def _check_detector(kind: str) -> Check:
    want_outputs = 9 if kind == "scrfd" else 3

    def check(info: ModelInfo) -> str | None:
        if not takes_pixels(info) and (len(info.inputs) != 1 or not _image_input(info.inputs[0])):
            return "the detector needs one image input [N,3,H,W] (float) or [N,H,W,3] (uint8 pixels)"
        if len(info.outputs) != want_outputs:
            return f"the {kind} detector needs {want_outputs} outputs, the model has {len(info.outputs)}"
        return None

    return check


def _check_embedder(info: ModelInfo) -> str | None:
    if len(info.inputs) != 1 or not _image_input(info.inputs[0]):
        return "the embedder needs one image input [N,3,112,112]"
    if len(info.outputs) != 1 or _rank(info.outputs[0]) != 2:
        return "the embedder needs one output [N,D]"
    return None


def _check_swapper(info: ModelInfo) -> str | None:
    ranks = sorted(_rank(s) for s in info.inputs)
    if ranks != [2, 4] or not any(_image_input(s) for s in info.inputs):
        return "the swapper needs one image input [N,3,S,S] and one latent input [N,D]"
    if len(info.outputs) != 1 or not _image_input(info.outputs[0]):
        return "the swapper needs one image output [N,3,S,S]"
    return None


def _check_enhancer(info: ModelInfo) -> str | None:
    if len(info.inputs) != 1 or not _image_input(info.inputs[0]):
        return "the enhancer needs one image input [N,3,S,S]"
    if len(info.outputs) != 1 or not _image_input(info.outputs[0]):
        return "the enhancer needs one image output [N,3,S,S]"
    return None


def _check_emap(info: ModelInfo) -> str | None:
    if len(info.inputs) != 1 or len(info.outputs) != 1 or _rank(info.inputs[0]) != 2:
        return "the emap model needs one input [rows,D] and one output [rows,D]"
    return None


def checked(info: ModelInfo, check: Check, pool: ClientPool) -> ModelInfo:
    problem = check(info)
    if problem is not None:
        shapes = (
            ", ".join(f"{s.name} {list(s.shape)}" for s in info.inputs)
            + " -> "
            + ", ".join(f"{s.name} {list(s.shape)}" for s in info.outputs)
        )
        raise InferenceServerError(
            f"Triton model {info.name!r} at {pool.url} does not fit: {problem} (it has {shapes})",
            code="inference_model_mismatch",
        )
    return info


def fetch_emap(runner: TritonRunner) -> np.ndarray:
    """InSwapper's identity map through the ``_emap`` model: identity rows times emap = emap."""
    dim = runner.inputs[0].shape[1]
    if dim is None:
        raise InferenceServerError(f"Triton model {runner.info.name!r} leaves the embedding size open")
    emap = runner.run({runner.inputs[0].name: np.eye(dim, dtype=np.float32)})[0]
    if emap.shape != (dim, dim):
        raise InferenceServerError(
            f"Triton model {runner.info.name!r} returned an emap of shape {emap.shape}"
        )
    return np.ascontiguousarray(emap, dtype=np.float32)


def _ready(pool: ClientPool, name: str) -> bool:
    with pool.client() as c:
        try:
            return bool(c.is_model_ready(name))
        except Exception:
            return False


def connect(url: str) -> ClientPool:
    """A client pool to a live, ready server, or a clear error saying what to do."""
    pool = ClientPool(url)
    with pool.client() as c:
        try:
            live = c.is_server_live(client_timeout=CONNECT_TIMEOUT_S)
            ready = live and c.is_server_ready(client_timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            raise InferenceServerError(
                f"cannot reach the inference server at {url}: {exc}. Start Triton (e.g. `docker compose "
                "-f docker/compose.yaml --profile triton up triton`) or drop --inference-url.",
                code="inference_unreachable",
            ) from exc
    if not ready:
        raise InferenceServerError(
            f"the inference server at {url} is up but not ready (models still loading or failed)",
            code="inference_unreachable",
        )
    return pool


def choose_shared_memory(pool: ClientPool, mode: str) -> bool:
    if mode not in SHARED_MEMORY_MODES:
        raise InferenceServerError(f"inference_shared_memory must be one of {', '.join(SHARED_MEMORY_MODES)}")
    if mode == "off":
        return False
    works, why = shared_memory_works(pool)
    if works:
        log.info("inference server at %s shares this host's memory: tensors travel through it", pool.url)
        return True
    if mode == "on":
        raise InferenceServerError(
            f"--inference-shared-memory on, but the server at {pool.url} cannot open this host's "
            f"shared memory ({why}); it must run on the same host with /dev/shm shared",
            code="inference_shared_memory",
        )
    log.info("inference server at %s does not share this host's memory: tensors travel over gRPC", pool.url)
    return False


def triton_neural_runners(settings: Settings) -> NeuralRunners:
    """The neural engine's runners on the Triton server at ``settings.inference_url``, each model
    checked against what its pipeline stage needs, and InSwapper's emap fetched once."""
    from swaprtc.inference.loader import NeuralRunners
    from swaprtc.inference.triton_repo import EMAP_SUFFIX, PIXEL_INPUTS, SWAPPERS

    pool = connect(settings.inference_url)
    shared = choose_shared_memory(pool, settings.inference_shared_memory)

    def runner(name: str, check: Check) -> TritonRunner:
        return TritonRunner(pool, checked(model_info(pool, name), check, pool), shared)

    det_name = "det_10g" if settings.detector == "scrfd" else "retinaface_mnet025"
    swap_name = next((n for n in SWAPPERS if _ready(pool, n)), SWAPPERS[0])
    det_runner = runner(det_name, _check_detector(settings.detector))
    detector: ModelRunner = det_runner
    if takes_pixels(det_runner.info):
        detector = PixelInputRunner(det_runner, PIXEL_INPUTS[settings.detector])
    embedder = runner("w600k_r50", _check_embedder)
    swapper = runner(swap_name, _check_swapper)
    emap_runner = runner(swap_name + EMAP_SUFFIX, _check_emap)
    emap = fetch_emap(emap_runner)
    emap_runner.close()
    models = {"detector": det_name, "embedder": "w600k_r50", "swapper": swap_name}
    enhancer = None
    if _ready(pool, "gfpgan_1.4"):
        enhancer = runner("gfpgan_1.4", _check_enhancer)
        models["enhancer"] = "gfpgan_1.4"
    else:
        log.info("the inference server has no gfpgan_1.4: the face enhancer is off")
    log.info("neural models on the inference server at %s: %s", settings.inference_url, models)
    return NeuralRunners(
        detector=detector,
        detector_kind=settings.detector,
        embedder=embedder,
        swapper=swapper,
        emap=emap,
        enhancer=enhancer,
        models=models,
        decisions={"inference_url": settings.inference_url, "inference_shared_memory": shared},
    )
