"""The project builds as a wheel with its licence declared the current way (PEP 639: an SPDX
expression and the licence file), without setuptools' deprecation warning about the old
``license = {text = ...}`` table (unsupported from 2027-02)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_declares_its_licence_without_deprecation_warnings(tmp_path: Path) -> None:
    # pip builds in an isolated environment with the setuptools pyproject.toml asks for, as
    # `make venv` and docker/install.sh do.
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-v",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-3000:]
    assert "SetuptoolsDeprecationWarning" not in log, log[log.find("SetuptoolsDeprecationWarning") - 200 :][
        :1500
    ]
    (wheel,) = tmp_path.glob("swaprtc-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        headers = z.read(metadata).decode().split("\n\n", 1)[0].splitlines()
        licences = [n for n in z.namelist() if ".dist-info/licenses/" in n]
        assert [n.rsplit("/", 1)[1] for n in licences] == ["LICENSE"]
        assert "MIT License" in z.read(licences[0]).decode()
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    assert not [h for h in headers if h.startswith("License:")], "the deprecated free-text License field"
