"""Settings: defaults, SWAPRTC_* environment, then flags (flags win); bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from swaprtc.cli import build_parser, main
from swaprtc.settings import Settings, SettingsError


def test_env_then_flags_override() -> None:
    env = {
        "SWAPRTC_PORT": "9000",
        "SWAPRTC_ENGINE": "embedded",
        "SWAPRTC_ICE_SERVERS": "stun:a.example:3478, turn:u:p@b.example:3478",
        "SWAPRTC_ICE_LOOPBACK": "yes",
        "SWAPRTC_MODELS_DIR": "/tmp/m",
    }
    settings = Settings.from_env(env)
    assert settings.port == 9000
    assert settings.engine == "embedded"
    assert settings.ice_servers == ("stun:a.example:3478", "turn:u:p@b.example:3478")
    assert settings.ice_loopback is True
    assert settings.models_dir == Path("/tmp/m")
    args = build_parser().parse_args(["serve", "--port", "9100", "--codec", "h264", "--no-ice-loopback"])
    merged = settings.with_args(args)
    assert (merged.port, merged.codec, merged.ice_loopback) == (9100, "h264", False)
    assert merged.engine == "embedded"


@pytest.mark.parametrize(
    "env",
    [
        {"SWAPRTC_ENGINE": "gpu"},
        {"SWAPRTC_PORT": "abc"},
        {"SWAPRTC_PORT": "0"},
        {"SWAPRTC_TLS_CERT": "/tmp/cert.pem"},
        {"SWAPRTC_ICE_LOOPBACK": "maybe"},
    ],
)
def test_bad_values_are_refused_with_a_message(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert info.value.code == "bad_setting"
    assert info.value.message


def test_cli_reports_bad_env_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWAPRTC_CODEC", "av1")
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err
    assert "bad_setting" in err and "vp8" in err and "Traceback" not in err


def test_swap_deadline_reaches_the_rtc_policy() -> None:
    from swaprtc.rtc.app import SESSIONS, create_app

    from tests.engine_doubles import FixedFaceDetector, PaintEngine

    app = create_app(Settings(swap_deadline_ms=50), PaintEngine(FixedFaceDetector()))
    assert app[SESSIONS].policy.deadline_s == pytest.approx(0.05)


def test_repeatable_flags_also_split_on_commas_and_providers_take_short_names() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--ice-servers",
            "stun:a.example:3478,turn:u:p@b.example:3478",
            "--ice-servers",
            "stun:c.example:3478",
            "--providers",
            "cuda, CPU",
        ]
    )
    settings = Settings().with_args(args)
    assert settings.ice_servers == ("stun:a.example:3478", "turn:u:p@b.example:3478", "stun:c.example:3478")
    assert settings.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert Settings.from_env({"SWAPRTC_PROVIDERS": "TensorRT,CUDAExecutionProvider"}).providers == (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
    )
    with pytest.raises(SettingsError, match="unknown execution provider"):
        Settings.from_env({"SWAPRTC_PROVIDERS": "GPU"})


@pytest.mark.parametrize(
    "env",
    [{"SWAPRTC_SESSION_IDLE_S": "0"}, {"SWAPRTC_MIN_BITRATE": "5000000"}],
)
def test_idle_time_and_bitrate_order_are_checked(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)
