"""Where the package's data lives: next to the package in a source checkout (and editable installs),
under ``<prefix>/share/swaprtc`` in an installed wheel (see ``[tool.setuptools.data-files]``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def resource_path(relative: str) -> Path:
    """``web`` or ``models/manifest.json``: the checkout's copy first, then the installed one."""
    local = CHECKOUT / relative
    if local.exists():
        return local
    installed = Path(sys.prefix) / "share" / "swaprtc" / relative
    return installed if installed.exists() else local


def default_models_dir() -> Path:
    """The checkout's ``models/``; for an installed wheel a per-user data folder."""
    if (CHECKOUT / "models" / "manifest.json").exists():
        return CHECKOUT / "models"
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "swaprtc" / "models"
