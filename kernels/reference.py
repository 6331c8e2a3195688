"""numba reference implementations of the C++ kernels, for tests only.

Written for obviousness, not speed, and structured differently from the C++ (a linear buffer
shifted after each window instead of a ring; Finish padding from the closed-form length) so the
two do not share mistakes. Never imported by ``framegate.engine``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from framegate.kernels.feature_window import FeatureWindowConfig


@numba.njit(cache=False)
def _push_frame(pending, held, frame, out, emitted, chunk_frames):
    """Append one frame; emit and shift by one chunk when the window is full.

    Returns (held, emitted) after the push.
    """
    window_frames = pending.shape[0]
    pending[held] = frame
    held += 1
    if held == window_frames:
        out[emitted] = pending
        emitted += 1
        keep = window_frames - chunk_frames
        pending[:keep] = pending[chunk_frames:].copy()
        held = keep
    return held, emitted


@numba.njit(cache=False)
def _stream_windows(frames, block_sizes, window_frames, chunk_frames, pad_value, finish):
    """All windows of a stream fed in blocks, and how many each call returned.

    counts[i] belongs to block i; counts[-1] to finish (0 when not finishing).
    """
    num_frames, num_bins = frames.shape
    out = np.empty((num_frames // chunk_frames + 2, window_frames, num_bins), np.float32)
    counts = np.zeros(block_sizes.shape[0] + 1, np.int64)
    pending = np.empty((window_frames, num_bins), np.float32)
    held = 0
    emitted = 0
    pos = 0
    for b in range(block_sizes.shape[0]):
        before = emitted
        for t in range(pos, pos + block_sizes[b]):
            held, emitted = _push_frame(pending, held, frames[t], out, emitted, chunk_frames)
        counts[b] = emitted - before
        pos += block_sizes[b]
    if finish and pos > 0:
        # Smallest L = k*C + (W - C) >= pos with k >= 1.
        k = max(1, -(-(pos - window_frames + chunk_frames) // chunk_frames))
        padded_length = k * chunk_frames + window_frames - chunk_frames
        pad_frame = np.full(num_bins, pad_value, np.float32)
        before = emitted
        for _ in range(padded_length - pos):
            held, emitted = _push_frame(pending, held, pad_frame, out, emitted, chunk_frames)
        counts[-1] = emitted - before
    return out[:emitted], counts


def reference_windows(
    frames: np.ndarray,
    block_sizes: Sequence[int],
    config: FeatureWindowConfig,
    finish: bool = True,
) -> list[np.ndarray]:
    """What FeatureWindow returns when ``frames`` arrive in ``block_sizes`` blocks.

    One array (k, window_frames, num_bins) per accept call, then one for finish if ``finish``.
    ``sum(block_sizes)`` must equal ``len(frames)``.
    """
    config.validate()
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    sizes = np.asarray(block_sizes, dtype=np.int64)
    if sizes.sum() != frames.shape[0] or (sizes < 0).any():
        raise ValueError("block_sizes must be >= 0 and sum to len(frames)")
    windows, counts = _stream_windows(
        frames,
        sizes,
        config.window_frames,
        config.chunk_frames,
        np.float32(config.pad_value),
        finish,
    )
    bounds = np.concatenate([[0], np.cumsum(counts)])
    calls = len(sizes) + (1 if finish else 0)
    return [windows[bounds[i] : bounds[i + 1]] for i in range(calls)]


@numba.njit(cache=False)
def _affine(weight, x, bias):
    """weight (out, in) @ x (in,) + bias, as plain loops (numba's @ would need scipy's BLAS)."""
    out = bias.copy()
    for i in range(weight.shape[0]):
        for j in range(weight.shape[1]):
            out[i] += weight[i, j] * x[j]
    return out


@numba.njit(cache=False)
def _global_cnn_block(x, norm_w, norm_b, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b, se1_w, se1_b, se2_w, se2_b,
                      dilation, ema, decay):
    """One global-CNN block over a whole utterance, frame by frame, indexing the full history."""
    frames, channels = x.shape
    hidden = pw1_w.shape[0]
    normed = _layer_norm_rows(x, norm_w, norm_b)
    u = np.zeros((frames, hidden), x.dtype)
    for t in range(frames):
        u[t] = np.maximum(_affine(pw1_w, normed[t], pw1_b), 0.0)
    y = x.copy()
    running = np.zeros(channels, x.dtype)
    squeezed = np.zeros(channels, x.dtype)
    for t in range(frames):
        v = dw_b.copy()
        for k in range(3):
            back = (2 - k) * dilation
            if t >= back:
                v += dw_w[:, k] * u[t - back]
        w = _affine(pw2_w, np.maximum(v, 0.0), pw2_b)
        if ema:
            if t == 0:
                running[:] = w
            else:
                running[:] = decay * running + (1.0 - decay) * w
            squeezed[:] = running
        else:
            running += w
            squeezed[:] = running / (t + 1)
        gate = 1.0 / (1.0 + np.exp(-_affine(se2_w, np.maximum(_affine(se1_w, squeezed, se1_b), 0.0), se2_b)))
        y[t] += w * gate
    return y


def reference_global_cnn(frames: np.ndarray, blocks: Sequence[dict], squeeze: str = "cumulative",
                         ema_decay: float = 0.99, dtype: type = np.float64) -> np.ndarray:
    """The global CNN's full-utterance causal pass in `dtype` (float64: the drift reference).

    `blocks` as for ``framegate.kernels.GlobalCnn``; block b has dilation 2^b.
    """
    x = np.asarray(frames, dtype=dtype)
    for b, w in enumerate(blocks):
        arrays = [np.ascontiguousarray(w[k], dtype=dtype) for k in
                  ("norm_weight", "norm_bias", "pw1_weight", "pw1_bias", "dw_weight", "dw_bias", "pw2_weight",
                   "pw2_bias", "se1_weight", "se1_bias", "se2_weight", "se2_bias")]
        x = _global_cnn_block(x, *arrays, 2 ** b, squeeze == "ema", dtype(ema_decay))
    return x


@numba.njit(cache=False)
def _layer_norm_rows(x, weight, bias):
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        mean = x[t].astype(np.float64).mean()
        var = ((x[t].astype(np.float64) - mean) ** 2).mean()
        out[t] = ((x[t] - mean) / np.sqrt(var + 1e-5)) * weight + bias
    return out


@numba.njit(cache=False)
def _gated_attention(x, att_on, norm_w, norm_b, qkv_w, qkv_b, out_w, out_b, num_heads, left_context):
    """Residual full-skip attention over a whole utterance, one query and one key at a time."""
    t_frames, d = x.shape
    dh = d // num_heads
    qkv = _layer_norm_rows(x, norm_w, norm_b) @ qkv_w.T + qkv_b
    result = x.copy()
    for t in range(t_frames):
        if not att_on[t]:
            continue
        heads = np.zeros(d)
        for h in range(num_heads):
            q = qkv[t, h * dh:(h + 1) * dh].astype(np.float64)
            weights = np.zeros(t_frames)
            peak = -np.inf
            for s in range(max(0, t - left_context), t + 1):
                if att_on[s]:
                    weights[s] = (q * qkv[s, d + h * dh:d + (h + 1) * dh]).sum() / np.sqrt(dh)
                    peak = max(peak, weights[s])
            total = 0.0
            for s in range(max(0, t - left_context), t + 1):
                if att_on[s]:
                    weights[s] = np.exp(weights[s] - peak)
                    total += weights[s]
            for s in range(max(0, t - left_context), t + 1):
                if att_on[s]:
                    heads[h * dh:(h + 1) * dh] += weights[s] / total * qkv[s, 2 * d + h * dh:2 * d + (h + 1) * dh]
        result[t] += (out_w.astype(np.float64) @ heads + out_b).astype(np.float32)
    return result


def gated_encoder_reference(frames: np.ndarray, gates: np.ndarray, tensors: dict[str, np.ndarray],
                            num_layers: int, num_heads: int, left_context: int) -> np.ndarray:
    """The gated encoder's blocks, final LayerNorm and projection over a whole utterance with the
    given decisions (T, 2L): what the C++ GatedEncoder computes in forced mode (arbitrators aside)."""
    x = np.asarray(frames, dtype=np.float32).copy()
    for layer in range(num_layers):
        w = {key.split(".", 1)[1]: v for key, v in tensors.items() if key.startswith(f"block{layer}.")}
        x = _gated_attention(x, gates[:, 2 * layer].astype(np.bool_), w["norm_att_weight"], w["norm_att_bias"],
                             w["qkv_weight"], w["qkv_bias"], w["att_out_weight"], w["att_out_bias"], num_heads,
                             left_context)
        on = gates[:, 2 * layer + 1].astype(bool)
        hidden = np.maximum(_layer_norm_rows(x[on], w["norm_ff_weight"], w["norm_ff_bias"]) @ w["ff1_weight"].T
                            + w["ff1_bias"], 0.0)
        x[on] += hidden @ w["ff2_weight"].T + w["ff2_bias"]
    return _layer_norm_rows(x, tensors["norm_out_weight"], tensors["norm_out_bias"]) @ tensors["out_weight"].T \
        + tensors["out_bias"]
