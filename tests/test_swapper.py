"""InSwapper stage: emap read from the file, latent maths, strength blending, I/O conversion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from swaprtc.errors import ModelError
from swaprtc.pipeline.swapper import (
    InSwapper,
    blend_latents,
    identity_latent,
    load_emap,
    read_last_initializer,
)

from tests.tiny_models import colour_matrix, inswapper_model, make_emap, session

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def emap() -> np.ndarray:
    return make_emap(seed=7)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, emap: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("models") / "inswapper_tiny.onnx"
    path.write_bytes(inswapper_model("colour", emap=emap).SerializeToString())
    return path


def test_emap_is_read_from_the_file(model_file: Path, emap: np.ndarray) -> None:
    np.testing.assert_array_equal(load_emap(model_file), emap)


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_last_initializer_matches_onnx(dtype: str) -> None:
    model = inswapper_model("invert", emap=make_emap(seed=3), emap_dtype=dtype)
    expected = numpy_helper.to_array(model.graph.initializer[-1]).astype(np.float32)
    np.testing.assert_array_equal(read_last_initializer(model.SerializeToString()), expected)


def test_last_initializer_from_typed_fields() -> None:
    # Writers may store values in float_data / int32_data instead of raw_data.
    model = inswapper_model("invert")
    values = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    model.graph.initializer.append(helper.make_tensor("late", TensorProto.FLOAT, [3, 4], values.ravel()))
    np.testing.assert_allclose(read_last_initializer(model.SerializeToString()), values)
    half = values.astype(np.float16)  # onnx.helper stores float16 bit patterns in int32_data
    model.graph.initializer.append(
        helper.make_tensor("late16", TensorProto.FLOAT16, [3, 4], half.astype(np.float32).ravel())
    )
    np.testing.assert_array_equal(read_last_initializer(model.SerializeToString()), half.astype(np.float32))


def test_bad_emap_is_a_model_error(tmp_path: Path) -> None:
    model = inswapper_model("invert")
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((2, 3), np.float32), "odd"))
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="square"):
        load_emap(path)
    with pytest.raises(ModelError):
        load_emap(tmp_path / "missing.onnx")


def test_source_latent_is_normalised_emb_times_emap(model_file: Path, emap: np.ndarray) -> None:
    swapper = InSwapper.from_file(model_file, session(inswapper_model("colour", emap=emap)))
    emb = np.random.default_rng(1).standard_normal(512).astype(np.float32)
    emb /= np.linalg.norm(emb)
    expected = emb @ emap
    expected /= np.linalg.norm(expected)
    got = swapper.latent(emb)
    assert got.shape == (1, 512)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-6)
    # an unnormalised embedding gives the same latent
    np.testing.assert_allclose(identity_latent(emb * 3.0, emap), got, rtol=1e-5, atol=1e-6)


def test_strength_blends_identities(emap: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    src = identity_latent(rng.standard_normal(512), emap)
    tgt = identity_latent(rng.standard_normal(512), emap)
    full, none, half = (blend_latents(src, tgt, s) for s in (1.0, 0.0, 0.5))
    np.testing.assert_allclose(full, src, atol=1e-6)
    np.testing.assert_allclose(none, tgt, atol=1e-6)
    assert not np.allclose(full, none, atol=1e-3)
    assert np.linalg.norm(half) == pytest.approx(1.0, abs=1e-5)
    mid = (src + tgt) / np.linalg.norm(src + tgt)
    np.testing.assert_allclose(half, mid, atol=1e-6)


def test_swap_converts_bgr_and_clips(emap: np.ndarray) -> None:
    swapper = InSwapper(session(inswapper_model("colour", emap=emap)), emap)
    assert swapper.size == 128
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    for seed in range(4):
        latent = identity_latent(np.random.default_rng(seed).standard_normal(512), emap)
        out = swapper.swap(crop, latent)
        assert out.shape == (128, 128, 3) and out.dtype == np.uint8
        rgb = np.clip(0.5 + 0.5 * (latent @ colour_matrix())[0], 0, 1) * 255
        np.testing.assert_allclose(out[64, 64], rgb[::-1], atol=1)  # BGR out
        assert (out == out[0, 0]).all()


def test_swap_invert_model(emap: np.ndarray) -> None:
    swapper = InSwapper(session(inswapper_model("invert", emap=emap)), emap)
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    out = swapper.swap(crop, swapper.latent(np.ones(512)))
    assert np.abs(out.astype(int) - (255 - crop.astype(int))).max() <= 1


def test_swap_with_float16_io(emap: np.ndarray) -> None:
    # fp16 exports may type their inputs float16: the swapper reads the types from the session
    swapper = InSwapper(session(inswapper_model("invert", emap=emap, fp16_io=True)), emap)
    assert swapper.image_input.dtype == np.float16 and swapper.latent_input.dtype == np.float16
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    out = swapper.swap(crop, swapper.latent(np.ones(512)))
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - (255 - crop.astype(int))).max() <= 1
