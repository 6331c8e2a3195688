"""One Recognizer shared by 8 threads, each with its own streams: results identical to serial runs.

The recognizer's ONNX Runtime sessions are shared by every stream; `InferenceSession.run` is
documented thread-safe and holds no per-call state in the session, and our streams carry all
per-utterance state (h/c, search, fbank, FeatureWindow). These tests check both claims, and that
the native calls on the decode path release the GIL so threads really run side by side.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import soxr

from framegate.engine.endpoint import EndpointConfig
from framegate.engine.recognizer import Recognizer
from framegate.kernels import FeatureWindow, FeatureWindowConfig

THREADS = 8
SHORT_UTTERANCES = EndpointConfig(rule1_min_trailing_silence_s=1.0, rule2_min_trailing_silence_s=0.3,
                                  rule3_min_utterance_length_s=1.5)


@pytest.fixture(scope="module")
def recognizer(tiny_bundle: Path) -> Recognizer:
    """Short endpoints, so every stream also closes and restarts utterances while shared."""
    return Recognizer(tiny_bundle, endpoint=SHORT_UTTERANCES)


def make_inputs(speechlike_16k: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
    """(rate, signal, block seed) per thread: different audio, rates and block sizes."""
    inputs = []
    for i in range(THREADS):
        signal = np.roll(speechlike_16k, 7919 * i)[: 16000 * 4]
        rate = (16000, 44100, 8000, 48000)[i % 4]
        inputs.append((rate, soxr.resample(signal, 16000, rate).astype(np.float32) if rate != 16000 else signal, i))
    return inputs


def run_streams(recognizer: Recognizer, rate: int, signal: np.ndarray, seed: int) -> list[tuple]:
    """Two streams in turn over the signal in seeded random blocks; every segment as a tuple."""
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(2):
        stream = recognizer.create_stream()
        pos = 0
        while pos < len(signal):
            size = int(rng.integers(1, rate // 2))
            stream.accept_waveform(rate, signal[pos:pos + size])
            recognizer.decode(stream)
            pos += size
        stream.input_finished()
        recognizer.decode(stream)
        results.append([astuple(s) for s in stream.result.segments])
    return results


def test_eight_threads_sharing_one_recognizer_equal_serial_runs(recognizer, speechlike_16k):
    inputs = make_inputs(speechlike_16k)
    serial = [run_streams(recognizer, *args) for args in inputs]
    threaded: list = [None] * THREADS
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def work(i: int) -> None:
        try:
            barrier.wait()
            threaded[i] = run_streams(recognizer, *inputs[i])
        except BaseException as e:  # surfaced below with the thread's index
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a decode thread hung"
    assert not errors, errors
    for i in range(THREADS):
        assert threaded[i] == serial[i], f"thread {i} differs from its serial run"
        assert sum(len(seg[1]) for seg in serial[i][0]) > 10 and len(serial[i][0]) >= 2  # not vacuous


def python_ran_in_the_middle_of(call, min_seconds: float) -> bool:
    """Whether a pure-Python thread ran during the middle third of `call()` (one native call).

    While a native call holds the GIL, other threads can run only at the bytecode boundaries
    around it (at most a switch interval, 5 ms, at either end), never in its middle; released,
    they run throughout. The call must last `min_seconds` for the middle to be meaningful."""
    seen: list[float] = []
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            now = time.perf_counter()
            if not seen or now - seen[-1] > 0.001:
                seen.append(now)

    thread = threading.Thread(target=heartbeat)
    thread.start()
    time.sleep(0.02)
    start = time.perf_counter()
    call()
    end = time.perf_counter()
    stop.set()
    thread.join()
    third = (end - start) / 3
    assert end - start >= min_seconds, f"the call took {end - start:.3f} s: too short to judge"
    return sum(start + third < t < end - third for t in seen) >= 3


def sized_to_last(make_call, size: int, min_seconds: float, grow=lambda n: 2 * n):
    """A fresh `make_call(size)`, `size` grown until one call lasts twice `min_seconds` on this
    machine: a fixed workload is judged too short on a fast one. Timed after a warm-up call, so
    one-off costs of a first call (lazy initialization) do not pass for the workload's."""
    make_call(size)()
    for _ in range(10):
        call = make_call(size)
        start = time.perf_counter()
        call()
        if time.perf_counter() - start >= 2 * min_seconds:
            break
        size = grow(size)
    return make_call(size)


def test_the_gil_check_detects_a_call_that_holds_the_gil():
    """The control: a long regular-expression match holds the GIL from start to end."""
    pattern = re.compile(r"(a*)*b")
    call = sized_to_last(lambda n: lambda: pattern.match("a" * n), 20, 0.1, grow=lambda n: n + 1)
    assert not python_ran_in_the_middle_of(call, min_seconds=0.1)


def test_onnx_runtime_run_releases_the_gil(recognizer):
    """A 100-second encoder pass (one native call) lets another Python thread run meanwhile."""
    enc = recognizer.bundle.encoder
    h = np.zeros((enc.num_layers, 1, enc.d_model), np.float32)
    c = np.zeros((enc.num_layers, 1, enc.rnn_hidden_size), np.float32)
    session = recognizer.bundle.encoder_session

    def encode(frames: int):
        x = np.random.default_rng(0).normal(-11, 7, size=(1, frames, 80)).astype(np.float32)
        return lambda: session.run(None, {"x": x, "h": h, "c": c})

    assert python_ran_in_the_middle_of(sized_to_last(encode, 10000, 0.05), min_seconds=0.05)


def test_feature_window_accept_releases_the_gil():
    """One accept of 150,000 frames (48 MB in, 48 MB of windows out) lets Python run meanwhile."""
    def accept(n: int):
        window = FeatureWindow(FeatureWindowConfig(window_frames=8, chunk_frames=8, num_bins=80))
        frames = np.ones((n, 80), np.float32)
        return lambda: window.accept(frames)

    assert python_ran_in_the_middle_of(sized_to_last(accept, 150_000, 0.03), min_seconds=0.03)
