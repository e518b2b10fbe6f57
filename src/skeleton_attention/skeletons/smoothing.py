"""Temporal smoothing of joint positions (numpy in, numpy out).

Kinect v1 joints jitter from frame to frame; STA-LSTM (after HBRNN and Zhu et al. 2016) smooths
each joint's position in time before training on SBU. The paper does not name its filter; the
works it cites for the step (HBRNN, Du et al. 2015) use a Savitzky-Golay filter. Three are
offered, each a weighted average over a centred window of ``window`` frames:

- ``moving_average``: equal weights;
- ``gaussian``: weights ``exp(-k^2 / (2 sigma^2))`` for offsets ``k`` in the window;
- ``savitzky_golay``: the least-squares polynomial fit of degree ``polyorder`` (default 2) over the
  window, evaluated at its centre; window 5, degree 2 gives HBRNN's (-3, 12, 17, 12, -3) / 35. At
  the sequence ends and around missing frames the same weights are renormalised over the frames
  that exist (not a refit), which keeps constants exact.

Edges and missing frames use *normalized convolution*: each output is the weighted mean over the
window's frames that exist and are present (a body's frame is missing when all its values are
zero), with the weights renormalised. So a constant stays constant up to the sequence ends, the
length never changes, no zero-padding pulls the ends towards the origin, and a missing frame
neither contributes nor becomes non-zero. ``method: none`` (or ``window: 1``) returns the input.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SMOOTHING_METHODS: tuple[str, ...] = ("none", "moving_average", "gaussian", "savitzky_golay")


def savitzky_golay_weights(window: int, polyorder: int) -> np.ndarray:
    """Weights of the centred Savitzky-Golay smoother: the value at offset 0 of the least-squares
    polynomial of degree ``polyorder`` through the ``window`` samples (first row of the pseudo-inverse
    of the Vandermonde matrix)."""
    if isinstance(polyorder, bool) or not isinstance(polyorder, int | np.integer) or not 0 <= polyorder < window:
        raise ValueError(f"savitzky_golay polyorder must be an integer in [0, window), not {polyorder!r}")
    offsets = np.arange(-(window // 2), window // 2 + 1, dtype=np.float64)
    vandermonde = offsets[:, None] ** np.arange(int(polyorder) + 1)[None, :]
    return np.linalg.pinv(vandermonde)[0]


def smoothing_kernel(method: str, window: int, sigma: float | None = None, polyorder: int = 2) -> np.ndarray:
    """The (window,) weights of ``method``, centred, summing to 1 (``sigma`` only for gaussian,
    ``polyorder`` only for savitzky_golay)."""
    if method not in SMOOTHING_METHODS or method == "none":
        raise ValueError(f"smoothing kernel method must be moving_average, gaussian or savitzky_golay, not {method!r}")
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1 or window % 2 == 0:
        raise ValueError(f"smoothing window must be an odd number of frames >= 1, not {window!r}")
    half = int(window) // 2
    if method == "moving_average":
        weights = np.ones(int(window))
    elif method == "savitzky_golay":
        weights = savitzky_golay_weights(int(window), polyorder)
        if weights[half] <= np.abs(weights[weights < 0]).sum():
            # a present frame always counts its own weight: it must outweigh every negative one so
            # that the renormalised average at the ends and around gaps stays well defined
            raise ValueError(f"savitzky_golay window {window} / polyorder {polyorder}: centre weight too small")
    else:
        if sigma is None or not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"gaussian smoothing needs sigma > 0 (frames), not {sigma!r}")
        offsets = np.arange(-half, half + 1, dtype=np.float64)
        weights = np.exp(-(offsets**2) / (2.0 * float(sigma) ** 2))
    return weights / weights.sum()


def smooth_time(coords: np.ndarray, kernel: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Filter ``(M, T, V, C)`` coordinates along T with a centred odd ``kernel``.

    ``valid`` is the (M, T) frame mask (default: a body's frame with any non-zero value). Returns
    float64 of the same shape; invalid frames stay exactly zero.
    """
    x = np.asarray(coords, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"coords must be (M, T, V, C), got shape {x.shape}")
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 1 or kernel.size % 2 == 0:
        raise ValueError(f"kernel must be 1-D with an odd length, got shape {kernel.shape}")
    if valid is None:
        valid = np.any(x != 0, axis=(2, 3))
    weight = valid.astype(np.float64)
    half = kernel.size // 2
    num_frames = x.shape[1]
    total = np.zeros_like(x)
    norm = np.zeros(x.shape[:2])
    for i, w in enumerate(kernel):
        k = i - half  # output frame t averages input frame t + k
        lo, hi = max(0, -k), min(num_frames, num_frames - k)
        if lo >= hi:
            continue
        src = slice(lo + k, hi + k)
        total[:, lo:hi] += w * weight[:, src, None, None] * x[:, src]
        norm[:, lo:hi] += w * weight[:, src]
    out = np.where(norm[..., None, None] > 0, total / np.maximum(norm, 1e-300)[..., None, None], 0.0)
    out[~valid] = 0.0
    return out


def smoothing_kernel_from(params: Mapping[str, object] | None) -> np.ndarray | None:
    """Validate ``{method: none|moving_average|gaussian|savitzky_golay, window: 5, sigma: 1.0,
    polyorder: 2}`` and return the kernel, or None for ``method: none``. ``sigma`` (frames, default
    1.0) is used by gaussian only, ``polyorder`` (default 2) by savitzky_golay only. Unknown keys or
    values raise ``ValueError`` (before any sample is touched)."""
    settings = dict(params or {})
    method = str(settings.pop("method", "none"))
    window = settings.pop("window", 5)
    sigma = settings.pop("sigma", None)
    polyorder = settings.pop("polyorder", 2)
    if settings:
        raise ValueError(f"unknown smoothing parameter(s) {sorted(settings)}; allowed method, window, sigma, polyorder")
    if method not in SMOOTHING_METHODS:
        raise ValueError(f"smoothing method must be one of {SMOOTHING_METHODS}, not {method!r}")
    if method == "none":
        return None
    return smoothing_kernel(method, window, 1.0 if sigma is None else float(sigma), polyorder)  # type: ignore[arg-type]


def smooth_joints(coords: np.ndarray, params: Mapping[str, object] | None = None) -> np.ndarray:
    """Apply the configured filter (see :func:`smoothing_kernel_from`) to ``(M, T, V, C)`` coords.

    Returns float32 of the input's shape; ``method: none`` returns an unchanged float32 copy.
    """
    kernel = smoothing_kernel_from(params)
    if kernel is None:
        return np.array(coords, dtype=np.float32, copy=True)
    return smooth_time(coords, kernel).astype(np.float32)
