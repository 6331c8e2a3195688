"""FeatureWindow: the C++ kernel against the numba reference and a plain-numpy construction."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from framegate.kernels import FeatureWindow, FeatureWindowConfig, _native
from framegate.kernels.reference import reference_windows


def offline_windows(frames: np.ndarray, config: FeatureWindowConfig, finish: bool) -> np.ndarray:
    """The specification in plain numpy: pad the whole utterance, take windows every chunk."""
    n = len(frames)
    W, C = config.window_frames, config.chunk_frames
    length = n
    if finish and n > 0:
        k = 1
        while k * C + (W - C) < n:
            k += 1
        length = k * C + (W - C)
    padded = np.full((length, config.num_bins), config.pad_value, np.float32)
    padded[:n] = frames
    windows = [padded[start : start + W] for start in range(0, length - W + 1, C)]
    return np.array(windows, np.float32).reshape(len(windows), W, config.num_bins)


def random_config(rng: np.random.Generator) -> FeatureWindowConfig:
    chunk = int(rng.integers(1, 12))
    return FeatureWindowConfig(
        window_frames=chunk + int(rng.integers(0, 20)),
        chunk_frames=chunk,
        num_bins=int(rng.integers(1, 9)),
        pad_value=float(rng.normal()),
    )


def random_blocks(rng: np.random.Generator, n: int) -> list[int]:
    """Block sizes summing to n, with 0-frame blocks sprinkled in."""
    sizes = []
    left = n
    while left > 0:
        size = 0 if rng.random() < 0.2 else int(min(left, rng.integers(1, 40)))
        sizes.append(size)
        left -= size
    sizes.append(0)
    return sizes


def run_stream(config: FeatureWindowConfig, frames: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    window = FeatureWindow(config)
    outputs = []
    pos = 0
    for size in sizes:
        outputs.append(window.accept(frames[pos : pos + size]))
        pos += size
    outputs.append(window.finish())
    return outputs


def assert_same_calls(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        assert g.shape == e.shape
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("seed", range(40))
def test_random_blocks_equal_reference_and_offline_windows(seed):
    rng = np.random.default_rng(seed)
    config = random_config(rng)
    frames = rng.normal(size=(int(rng.integers(0, 300)), config.num_bins)).astype(np.float32)
    sizes = random_blocks(rng, len(frames))

    got = run_stream(config, frames, sizes)

    assert_same_calls(got, reference_windows(frames, sizes, config))
    streamed = np.concatenate(got).reshape(-1, config.window_frames, config.num_bins)
    np.testing.assert_array_equal(streamed, offline_windows(frames, config, finish=True))


@pytest.mark.parametrize("seed", range(5))
def test_one_block_of_thousands_of_frames_equals_reference(seed):
    rng = np.random.default_rng(100 + seed)
    config = random_config(rng)
    frames = rng.normal(size=(int(rng.integers(3000, 9000)), config.num_bins)).astype(np.float32)

    got = run_stream(config, frames, [len(frames)])

    assert_same_calls(got, reference_windows(frames, [len(frames)], config))
    np.testing.assert_array_equal(
        np.concatenate(got), offline_windows(frames, config, finish=True)
    )


def test_windows_are_emitted_as_soon_as_complete():
    config = FeatureWindowConfig(window_frames=5, chunk_frames=2, num_bins=1)
    window = FeatureWindow(config)
    frames = np.arange(9, dtype=np.float32).reshape(9, 1)
    counts = [len(window.accept(frames[t : t + 1])) for t in range(9)]
    # Windows start at 0, 2, 4 and end at frames 4, 6, 8.
    assert counts == [0, 0, 0, 0, 1, 0, 1, 0, 1]


def test_finish_pads_to_the_smallest_covering_length():
    config = FeatureWindowConfig(window_frames=5, chunk_frames=2, num_bins=1, pad_value=-7.0)
    window = FeatureWindow(config)
    window.accept(np.arange(6, dtype=np.float32).reshape(6, 1))  # window [0..4] emitted
    last = window.finish()  # L = 7: one more window at 2, frames 2..5 plus one pad frame
    np.testing.assert_array_equal(last[:, :, 0], [[2, 3, 4, 5, -7]])
    assert window.frames_received == 6
    assert window.windows_emitted == 2


def test_finish_adds_nothing_when_every_frame_is_covered():
    window = FeatureWindow(FeatureWindowConfig(window_frames=5, chunk_frames=2, num_bins=1))
    window.accept(np.zeros((5, 1), np.float32))
    assert window.finish().shape == (0, 5, 1)


def test_finish_of_a_short_utterance_returns_one_padded_window():
    window = FeatureWindow(FeatureWindowConfig(6, 4, num_bins=2, pad_value=9.0))
    window.accept(np.ones((2, 2), np.float32))
    out = window.finish()
    assert out.shape == (1, 6, 2)
    np.testing.assert_array_equal(out[0, :2], 1.0)
    np.testing.assert_array_equal(out[0, 2:], 9.0)


def test_finish_of_an_empty_stream_returns_no_window():
    window = FeatureWindow(FeatureWindowConfig(6, 4, num_bins=2))
    window.accept(np.zeros((0, 2), np.float32))
    assert window.finish().shape == (0, 6, 2)


def test_second_finish_returns_nothing_and_accept_after_finish_raises():
    window = FeatureWindow(FeatureWindowConfig(4, 2, num_bins=1))
    window.accept(np.zeros((3, 1), np.float32))
    assert len(window.finish()) == 1
    assert window.finished
    assert len(window.finish()) == 0
    with pytest.raises(RuntimeError, match="Reset"):
        window.accept(np.zeros((1, 1), np.float32))


def test_reset_starts_a_new_utterance():
    rng = np.random.default_rng(7)
    config = FeatureWindowConfig(7, 3, num_bins=4, pad_value=-1.0)
    first = rng.normal(size=(20, 4)).astype(np.float32)
    second = rng.normal(size=(11, 4)).astype(np.float32)
    window = FeatureWindow(config)
    window.accept(first)  # leaves frames buffered mid-window
    window.reset()
    assert (window.frames_received, window.windows_emitted, window.finished) == (0, 0, False)

    got = [window.accept(second), window.finish()]

    assert_same_calls(got, run_stream(config, second, [len(second)]))
    window.reset()
    np.testing.assert_array_equal(window.accept(first), offline_windows(first, config, False))


def test_capacity_stays_fixed_over_a_long_stream():
    config = FeatureWindowConfig(21, 8, num_bins=3)
    window = FeatureWindow(config)
    capacity = window.capacity_frames
    assert capacity >= config.window_frames
    block = np.zeros((5000, 3), np.float32)
    for _ in range(20):
        window.accept(block)
    assert window.capacity_frames == capacity
    assert window.frames_received == 100_000
    assert window.windows_emitted == (100_000 - 21) // 8 + 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(window_frames=4, chunk_frames=0), "chunk_frames"),
        (dict(window_frames=2, chunk_frames=3), "window_frames"),
        (dict(window_frames=4, chunk_frames=2, num_bins=0), "num_bins"),
        (dict(window_frames=2**20, chunk_frames=1, num_bins=2**20), "num_bins"),
        (dict(window_frames=4, chunk_frames=2, pad_value=float("nan")), "pad_value"),
    ],
)
def test_invalid_config_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FeatureWindowConfig(**kwargs).validate()
    with pytest.raises(ValueError, match=field):
        _native.FeatureWindowConfig(**kwargs).validate()
    with pytest.raises(ValueError, match=field):
        _native.FeatureWindow(_native.FeatureWindowConfig(**kwargs))
    with pytest.raises(ValueError, match=field):
        FeatureWindow(FeatureWindowConfig(**kwargs))


def test_python_and_native_validation_agree():
    rng = np.random.default_rng(3)
    for _ in range(300):
        kwargs = dict(
            window_frames=int(rng.integers(-2, 6)),
            chunk_frames=int(rng.integers(-2, 6)),
            num_bins=int(rng.integers(-2, 4)),
        )
        python_ok = native_ok = True
        try:
            FeatureWindowConfig(**kwargs).validate()
        except ValueError:
            python_ok = False
        try:
            _native.FeatureWindowConfig(**kwargs).validate()
        except ValueError:
            native_ok = False
        assert python_ok == native_ok, kwargs


BAD_FRAMES = [
    pytest.param(np.zeros((4, 3), np.float64), "float64", id="float64"),
    pytest.param(np.zeros((4, 3), np.int16), "int16", id="int16"),
    pytest.param(np.zeros(3, np.float32), r"\(3,\)", id="1-d"),
    pytest.param(np.zeros((1, 4, 3), np.float32), r"\(1, 4, 3\)", id="3-d"),
    pytest.param(np.zeros((4, 5), np.float32), r"\(4, 5\)", id="wrong-bins"),
    pytest.param([[0.0, 0.0, 0.0]], "list", id="list"),
]


@pytest.mark.parametrize("frames, got", BAD_FRAMES)
def test_native_binding_refuses_wrong_frames_with_value_error(frames, got):
    window = _native.FeatureWindow(_native.FeatureWindowConfig(5, 2, num_bins=3))
    with pytest.raises(ValueError, match=r"float32 array of shape \(n, 3\); got .*" + got):
        window.accept(frames)
    assert window.frames_received == 0


def test_native_binding_refuses_non_contiguous_frames():
    window = _native.FeatureWindow(_native.FeatureWindowConfig(5, 2, num_bins=3))
    with pytest.raises(ValueError, match="non-contiguous"):
        window.accept(np.zeros((8, 3), np.float32)[::2])


@pytest.mark.parametrize("frames, got", BAD_FRAMES)
def test_wrapper_refuses_wrong_frames_with_value_error(frames, got):
    window = FeatureWindow(FeatureWindowConfig(5, 2, num_bins=3))
    with pytest.raises(ValueError, match=r"float32 array of shape \(n, 3\); got .*" + got):
        window.accept(frames)


def test_wrapper_accepts_non_contiguous_float32_frames():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(40, 6)).astype(np.float32)
    config = FeatureWindowConfig(5, 2, num_bins=3)
    strided = FeatureWindow(config).accept(frames[:, ::2])
    dense = FeatureWindow(config).accept(np.ascontiguousarray(frames[:, ::2]))
    np.testing.assert_array_equal(strided, dense)


def test_native_config_of_a_live_window_is_a_copy():
    window = _native.FeatureWindow(_native.FeatureWindowConfig(5, 2, num_bins=3))
    window.config.num_bins = 99
    assert window.config.num_bins == 3


def test_threads_run_native_calls_concurrently_and_match_serial():
    rng = np.random.default_rng(11)
    config = FeatureWindowConfig(40, 8, num_bins=80)
    streams = [rng.normal(size=(40_000, 80)).astype(np.float32) for _ in range(4)]
    serial = [run_stream(config, s, [len(s)]) for s in streams]
    results: list = [None] * len(streams)

    def work(i: int) -> None:
        results[i] = run_stream(config, streams[i], [len(streams[i])])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "native call deadlocked"
    for got, expected in zip(results, serial):
        assert_same_calls(got, expected)


def test_one_window_shared_by_threads_stays_consistent():
    config = FeatureWindowConfig(10, 5, num_bins=8)
    window = FeatureWindow(config)
    block = np.zeros((1000, 8), np.float32)
    emitted = [0] * 4

    def work(i: int) -> None:
        for _ in range(50):
            emitted[i] += len(window.accept(block))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "native call deadlocked"
    assert window.frames_received == 200_000
    assert sum(emitted) == window.windows_emitted == (200_000 - 10) // 5 + 1


def test_importing_kernels_does_not_load_numba():
    code = "import sys, framegate.kernels; assert 'numba' not in sys.modules, 'numba loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)
