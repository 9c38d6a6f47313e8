"""Colour and light transfer for the embedded swap; pure functions of small arrays.

Everything is estimated on a thumbnail of the face box and returned as a per-pixel gain and
offset field, so the full-resolution work is one multiply-add: ``out = warped · gain + offset``.

1. Global statistics: the warped source's skin mean and spread per channel are moved to the
   target's (spread gain clamped), so skin tone follows the target's camera and white balance.
2. Shading: the ratio of the target's to the corrected source's luminance, both blurred over skin
   at a scale that carries lighting but not features, clamped to a narrow range.
3. Membrane: what is still different along the blend boundary is interpolated smoothly inside
   (a cheap gradient-domain clone: the source keeps its gradients, the seam's offset goes to 0).
A greyscale target gets a greyscale face; highlights are capped at the brighter of the two faces'
brightest skin, so no gain can blow out a nose tip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SPREAD_GAIN = (0.6, 1.6)  # clamp on the per-channel spread ratio
SHADE_GAIN = (0.6, 1.5)  # clamp on the low-frequency shading ratio
MEMBRANE_LIMIT = 40.0  # largest boundary offset carried inside (grey levels)
GREY_CHROMA = 3.0  # mean |B-G| + |G-R| over skin below which the target is greyscale
HIGHLIGHT_MARGIN = 10.0  # grey levels above the brighter face's brightest skin


@dataclass(frozen=True, eq=False)
class ColorTransfer:
    gain: np.ndarray  # (h, w, 3) float32 on the thumbnail
    offset: np.ndarray  # (h, w, 3) float32 on the thumbnail
    cap: np.ndarray  # (3,) float32 per-channel ceiling for the corrected face
    grey: bool  # the target is greyscale: the source must be turned grey first


def _blurred_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """The denominator of _masked_blur: one per mask and sigma, however many images it blurs."""
    return np.maximum(cv2.GaussianBlur(mask, (0, 0), sigma), 1e-3)


def _masked_blur(
    image: np.ndarray, mask: np.ndarray, sigma: float, den: np.ndarray | None = None
) -> np.ndarray:
    """Normalised convolution: a Gaussian blur of ``image`` that only averages inside ``mask``;
    ``den``: _blurred_mask(mask, sigma) when already made."""
    weighted = image * (mask[..., None] if image.ndim == 3 else mask)
    num = cv2.GaussianBlur(weighted, (0, 0), sigma)
    den = _blurred_mask(mask, sigma) if den is None else den
    return num / (den[..., None] if image.ndim == 3 else den)


def _luma(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.114, 0.587, 0.299], np.float32)


def is_grey(target: np.ndarray, skin: np.ndarray) -> bool:
    sel = skin > 0.5
    if not sel.any():
        return False
    px = target[sel].astype(np.float32)
    chroma = np.abs(px[:, 0] - px[:, 1]) + np.abs(px[:, 1] - px[:, 2])
    return float(chroma.mean()) < GREY_CHROMA


def to_grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def color_transfer(
    target: np.ndarray,
    source: np.ndarray,
    skin: np.ndarray,
    boundary: np.ndarray,
    sigma: float,
    grey: bool,
    tone: float = 1.0,
) -> ColorTransfer:
    """Gain/offset fields taking ``source`` (the warped source face, greyed already when
    ``grey``) to ``target``'s colour and light. Thumbnails: ``target``/``source`` (h, w, 3);
    ``skin`` (h, w) where both show skin; ``boundary`` (h, w) the blend edge band; ``sigma`` the
    shading blur in thumbnail pixels; ``tone`` how far the skin tone moves to the target's
    (0 keeps the source's, 1 takes the target's mean and spread)."""
    h, w = skin.shape
    t = target.astype(np.float32)
    s = source.astype(np.float32)
    sel = skin > 0.5
    if np.count_nonzero(sel) < 4:
        ones = np.ones((h, w, 3), np.float32)
        return ColorTransfer(ones, np.zeros_like(ones), np.full(3, 255, np.float32), grey)
    # The skin's pixels are gathered once: numpy's per-call cost dominates on thumbnails.
    t_skin, s_skin = t[sel], s[sel]
    mu_t, mu_s = t_skin.mean(axis=0), s_skin.mean(axis=0)
    # Spread of the skin's detail (minus its low frequencies): lighting gradients are the
    # shading step's business and must not inflate the contrast gain.
    den = _blurred_mask(skin, sigma)
    sd_t = (t - _masked_blur(t, skin, sigma, den))[sel].std(axis=0)
    sd_s = (s - _masked_blur(s, skin, sigma, den))[sel].std(axis=0)
    g = np.clip(sd_t / np.maximum(sd_s, 1.0), *SPREAD_GAIN).astype(np.float32)
    if grey:
        g[:] = g.mean()
    g = 1.0 + tone * (g - 1.0)
    o = (mu_s + tone * (mu_t - mu_s) - g * mu_s).astype(np.float32)
    corrected = s * g + o
    # Relative shading (each face's lighting pattern over its own mean): the light follows the
    # target while the overall skin tone stays where the global step put it.
    lt, lc = _luma(t), _luma(corrected)
    lc_mean = float(lc[sel].mean())
    shade_t = _masked_blur(lt, skin, sigma, den) / max(float(lt[sel].mean()), 1.0)
    shade_c = _masked_blur(lc, skin, sigma, den) / max(lc_mean, 1.0)
    shade = np.clip(shade_t / np.maximum(shade_c, 0.05), *SHADE_GAIN).astype(np.float32)
    # Shading moves light around; it must not change the skin's overall level the global step set.
    shade *= np.float32(lc_mean / max(float((lc * shade)[sel].mean()), 1.0))
    shade = shade[..., None]
    gain = g[None, None, :] * shade
    offset = o[None, None, :] * shade
    # Membrane: the remaining difference on the boundary band, spread smoothly over the face.
    # Boundary points that differ by more than MEMBRANE_LIMIT are not skin on both sides (hair,
    # glasses, background): they are left out rather than smeared over the face.
    diff = t - (s * gain + offset)
    band = boundary * (np.abs(diff).max(axis=2) < MEMBRANE_LIMIT)
    # Where little of the edge is skin on both sides, its few points say little: trust them less.
    band_sum = float(band.sum())
    trust = min(1.0, 2.0 * band_sum / max(float(boundary.sum()), 1.0))
    if band_sum >= 4:
        membrane = _masked_blur(diff * band[..., None], band.astype(np.float32), 1.5 * sigma)
        offset = offset + membrane * np.float32(trust)
    if grey:
        offset[:] = offset.mean(axis=2, keepdims=True)
    # Thumbnails average peaks away, hence the 99th percentile plus a margin as the ceiling.
    # Both faces' channels side by side: one percentile call (numpy's overhead is most of its cost).
    top = np.percentile(np.concatenate([t_skin, s_skin], axis=1), 99, axis=0)
    brightest = np.maximum(top[:3], top[3:])
    cap = np.minimum(brightest + HIGHLIGHT_MARGIN, 255.0).astype(np.float32)
    return ColorTransfer(gain.astype(np.float32), offset.astype(np.float32), cap, grey)
