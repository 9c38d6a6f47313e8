"""C2PA content credentials on ``swaprtc swap`` outputs, read back with c2pa's own Reader: the
manifest says "AI-generated" (IPTC compositeWithTrainedAlgorithmicMedia), the signature validates,
and changing the file afterwards is detected. Signed with a generated throw-away certificate and
with an operator-supplied certificate and key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import c2pa
import cv2
import numpy as np
import pytest
from swaprtc.offline import describe_credentials, swap_file
from swaprtc.pipeline.detector import RetinaFaceDetector
from swaprtc.provenance import (
    AI_SOURCE_TYPE,
    ContentCredentials,
    ProvenanceError,
    credentials_for,
    load_identity,
    self_signed_identity,
)
from swaprtc.types import SwapOptions

from tests.engine_doubles import PaintEngine

if TYPE_CHECKING:
    import onnxruntime as ort


@pytest.fixture(scope="module")
def engine(retinaface_session: ort.InferenceSession) -> PaintEngine:
    return PaintEngine(RetinaFaceDetector(retinaface_session))


@pytest.fixture(scope="module")
def credentials() -> ContentCredentials:
    return ContentCredentials(self_signed_identity())


def actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found = [a["data"]["actions"] for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    return [action for group in found for action in group]


def read_back(path: Path) -> tuple[dict[str, Any], str | None]:
    reader = c2pa.Reader(str(path))
    manifest = reader.get_active_manifest()
    assert manifest is not None
    return manifest, reader.get_validation_state()


def write_video(path: Path, frame: np.ndarray, frames: int = 6) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for i in range(frames):
            video = av.VideoFrame.from_ndarray(frame, format="bgr24")
            video.pts = i
            out.mux(stream.encode(video))
        out.mux(stream.encode(None))


@pytest.mark.parametrize("ext", [".jpg", ".png", ".mp4"])
def test_swap_outputs_carry_an_ai_generated_manifest(
    engine: PaintEngine, credentials: ContentCredentials, astronaut_bgr: np.ndarray, tmp_path: Path, ext: str
) -> None:
    source = tmp_path / "source.png"
    cv2.imwrite(str(source), astronaut_bgr)
    target = tmp_path / f"target{ext}"
    if ext == ".mp4":
        write_video(target, astronaut_bgr)
    else:
        cv2.imwrite(str(target), astronaut_bgr)
    output = tmp_path / f"out{ext}"
    stats = swap_file(source, target, output, engine, SwapOptions(), progress=False, credentials=credentials)
    assert stats.frames_swapped == stats.frames > 0
    manifest, state = read_back(output)
    assert state == "Valid"  # signature and hashes check out; "Trusted" needs a known CA
    (created,) = actions(manifest)
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == AI_SOURCE_TYPE
    assert "AI-generated" in created["description"] and "untrusted" in created["description"]
    assert manifest["claim_generator_info"][0]["name"] == "swaprtc"
    assert manifest["signature_info"]["issuer"] == "swaprtc (self-signed, untrusted)"
    # The output still decodes as what it claims to be.
    if ext == ".mp4":
        with av.open(str(output)) as media:
            assert sum(1 for _ in media.decode(video=0)) == stats.frames
    else:
        assert cv2.imread(str(output)) is not None
    assert not list(tmp_path.glob(".*"))  # no partial files left behind


def test_changing_a_signed_file_is_detected(
    engine: PaintEngine, credentials: ContentCredentials, astronaut_bgr: np.ndarray, tmp_path: Path
) -> None:
    source, output = tmp_path / "source.png", tmp_path / "out.png"
    cv2.imwrite(str(source), astronaut_bgr)
    swap_file(source, source, output, engine, SwapOptions(), progress=False, credentials=credentials)
    data = bytearray(output.read_bytes())
    # Change pixels without touching the manifest: re-encode the same PNG chunks with one byte
    # flipped in the middle of the image data.
    idat = data.index(b"IDAT")
    data[idat + 100] ^= 0xFF
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(bytes(data))
    _, state = read_back(tampered)
    assert state == "Invalid"


def test_operator_certificate_and_key(engine: PaintEngine, astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    made = self_signed_identity()  # stands in for the operator's own chain and key files
    cert, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.write_bytes(made.chain_pem)
    key.write_bytes(made.key_pem)
    credentials = credentials_for(True, cert, key)
    assert credentials is not None and not credentials.identity.self_signed
    source, output = tmp_path / "source.jpg", tmp_path / "out.jpg"
    cv2.imwrite(str(source), astronaut_bgr)
    swap_file(source, source, output, engine, SwapOptions(), progress=False, credentials=credentials)
    manifest, state = read_back(output)
    assert state == "Valid"
    assert "untrusted" not in actions(manifest)[0]["description"]
    assert describe_credentials(credentials, output) == "C2PA manifest signed with the operator's certificate"

    key.write_bytes(b"not a key")
    with pytest.raises(ProvenanceError) as exc:
        load_identity(cert, key)
    assert exc.value.code == "c2pa_bad_key"


def test_without_credentials_or_where_c2pa_cannot_embed(
    engine: PaintEngine, credentials: ContentCredentials, astronaut_bgr: np.ndarray, tmp_path: Path
) -> None:
    assert credentials_for(False, None, None) is None
    source = tmp_path / "source.png"
    cv2.imwrite(str(source), astronaut_bgr)
    plain = tmp_path / "plain.png"
    swap_file(source, source, plain, engine, SwapOptions(), progress=False)
    with pytest.raises(c2pa.C2paError):
        c2pa.Reader(str(plain))
    assert describe_credentials(None, plain) == "none (--c2pa off)"
    # WebM cannot carry a C2PA manifest: the output is written, and the CLI says so.
    target, webm = tmp_path / "target.mp4", tmp_path / "out.webm"
    write_video(target, astronaut_bgr, frames=3)
    swap_file(source, target, webm, engine, SwapOptions(), progress=False, credentials=credentials)
    assert webm.stat().st_size > 0
    assert describe_credentials(credentials, webm).startswith("none: C2PA cannot be embedded into .webm")


def test_swap_command_signs_and_labels_by_default(
    monkeypatch: pytest.MonkeyPatch,
    engine: PaintEngine,
    astronaut_bgr: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import swaprtc.factory
    from swaprtc.cli import main

    monkeypatch.setattr(swaprtc.factory, "build_engine", lambda settings: engine)
    source = tmp_path / "source.png"
    cv2.imwrite(str(source), astronaut_bgr)
    base = ["swap", "--source", str(source), "--target", str(source), "--no-progress", "--output"]
    assert main([*base, str(tmp_path / "default.png")]) == 0
    assert "throw-away self-signed certificate (untrusted, but tamper-evident)" in capsys.readouterr().out
    manifest, state = read_back(tmp_path / "default.png")
    assert state == "Valid" and actions(manifest)[0]["digitalSourceType"] == AI_SOURCE_TYPE
    labelled = cv2.imread(str(tmp_path / "default.png"))

    assert main([*base, str(tmp_path / "off.png"), "--c2pa", "off", "--label", "off"]) == 0
    assert "content credentials: none (--c2pa off)" in capsys.readouterr().out
    with pytest.raises(c2pa.C2paError):
        c2pa.Reader(str(tmp_path / "off.png"))
    plain = cv2.imread(str(tmp_path / "off.png"))
    corner = (slice(0, 40), slice(300, 512))  # the label's default corner: top right
    assert np.abs(labelled[corner].astype(int) - plain[corner].astype(int)).mean() > 10
    assert np.array_equal(plain[corner], astronaut_bgr[corner])
