"""Property tests for the FeatureWindow binding: random shapes, dtypes, strides and values.

Whatever array arrives, the wrapper and the raw binding either return exactly the windows of
the plain-numpy specification (NaN and Inf frames pass through bit for bit: the kernel copies,
it does not compute) or raise ValueError naming the expected shape; never another exception,
never a crash.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from framegate.kernels import FeatureWindow, FeatureWindowConfig, _native
from test_feature_window import offline_windows  # tests/kernels is on sys.path

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.int32, np.uint8, np.bool_, np.complex64])
VALUES = st.floats(width=32, allow_nan=True, allow_infinity=True)


@st.composite
def configs(draw) -> FeatureWindowConfig:
    chunk = draw(st.integers(1, 8))
    return FeatureWindowConfig(window_frames=chunk + draw(st.integers(0, 8)), chunk_frames=chunk,
                               num_bins=draw(st.integers(1, 6)), pad_value=draw(st.floats(-5, 5, width=32)))


@st.composite
def arrays(draw, num_bins: int) -> np.ndarray:
    """Mostly well-formed float32 frames (strided, Fortran, reversed views), sometimes anything."""
    ndim = draw(st.integers(0, 3))
    if ndim == 2 and draw(st.booleans()):
        shape = (draw(st.integers(0, 40)), num_bins)
    else:
        shape = tuple(draw(st.integers(0, 7)) for _ in range(ndim))
    dtype = np.float32 if draw(st.integers(0, 3)) else draw(DTYPES)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf cast to ints: any value will do
        base = draw(hnp.arrays(np.float32, tuple(2 * d for d in shape), elements=VALUES)).astype(dtype)
    view = draw(st.sampled_from(["contiguous", "strided", "fortran", "reversed"]))
    if view == "strided":
        return base[tuple(slice(None, None, 2) for _ in shape)]
    cut = base[tuple(slice(0, d) for d in shape)]
    if view == "fortran":
        return np.asfortranarray(cut)
    if view == "reversed" and ndim:
        return cut[::-1]
    return np.ascontiguousarray(cut)


def well_formed(frames: np.ndarray, num_bins: int) -> bool:
    return frames.dtype == np.float32 and frames.ndim == 2 and frames.shape[1] == num_bins


@SETTINGS
@given(data=st.data(), config=configs())
def test_wrapper_returns_the_specified_windows_or_a_value_error(data, config):
    window = FeatureWindow(config)
    accepted = []
    for _ in range(data.draw(st.integers(1, 4), label="blocks")):
        frames = data.draw(arrays(config.num_bins), label="frames")
        try:
            window.accept(frames)
        except ValueError as e:
            assert not well_formed(frames, config.num_bins)
            assert f"(n, {config.num_bins})" in str(e)
            continue
        assert well_formed(frames, config.num_bins)
        accepted.append(np.ascontiguousarray(frames))
    every = np.concatenate(accepted) if accepted else np.zeros((0, config.num_bins), np.float32)
    replay = FeatureWindow(config)
    got = [replay.accept(a) for a in accepted] + [replay.finish()]
    expected = offline_windows(every, config, finish=True)
    np.testing.assert_array_equal(np.concatenate(got).view(np.uint32), expected.view(np.uint32))
    assert window.frames_received == len(every)


@SETTINGS
@given(data=st.data(), config=configs())
def test_raw_binding_refuses_anything_but_contiguous_float32_frames(data, config):
    window = _native.FeatureWindow(config.to_native())
    frames = data.draw(st.one_of(arrays(config.num_bins), st.none(), st.integers(), st.lists(st.floats(), max_size=3)))
    ok = isinstance(frames, np.ndarray) and well_formed(frames, config.num_bins) and frames.flags.c_contiguous
    try:
        out = window.accept(frames)
    except ValueError as e:
        assert not ok and "C-contiguous float32" in str(e)
        return
    assert ok
    np.testing.assert_array_equal(out.view(np.uint32), offline_windows(frames, config, finish=False).view(np.uint32))
