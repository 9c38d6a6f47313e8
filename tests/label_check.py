"""Does a received frame carry the server's "AI-generated" label? Shared by the aiortc-client tests
(tests/test_label.py) and the browser tests (tests/test_browser.py)."""

from __future__ import annotations

import numpy as np
from swaprtc.label import Labeler, LabelStyle, RenderedLabel, render_label


def label_box(shape: tuple[int, ...], style: LabelStyle | None = None) -> RenderedLabel:
    label = render_label(shape[1], shape[0], style or LabelStyle())
    assert label is not None
    return label


def label_region(image: np.ndarray, label: RenderedLabel) -> np.ndarray:
    h, w = label.alpha.shape
    return image[label.y : label.y + h, label.x : label.x + w].astype(np.int16)


def corner_distances(received: np.ndarray, sent: np.ndarray) -> tuple[float, float]:
    """Mean difference of the label's corner from (the sent frame, the sent frame labelled here)."""
    label = label_box(sent.shape)
    got = label_region(received, label)
    plain = label_region(sent, label)
    labelled = label_region(Labeler(LabelStyle()).draw(sent.copy()), label)
    return float(np.abs(got - plain).mean()), float(np.abs(got - labelled).mean())


def carries_label(received: np.ndarray, sent: np.ndarray) -> bool:
    """The corner looks like the labelled frame (up to codec noise), far from the unlabelled one."""
    from_plain, from_labelled = corner_distances(received, sent)
    return from_plain > 25 and from_labelled < from_plain / 3


def unchanged_corner(received: np.ndarray, sent: np.ndarray) -> bool:
    label = label_box(sent.shape)
    return float(np.abs(label_region(received, label) - label_region(sent, label)).mean()) < 8
