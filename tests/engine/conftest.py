"""Fixtures for the live (microphone) tests: a spoken utterance and the bundle to decode it with."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SPOKEN_TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="session")
def spoken_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3.4 s of espeak-ng speech at its native 22050 Hz (so the live path resamples)."""
    path = tmp_path_factory.mktemp("spoken") / "fox.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), SPOKEN_TEXT],
                   check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def two_utterances_wav(spoken_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The utterance, 1.5 s of silence, the utterance again: a pause the endpointer can close."""
    samples, rate = sf.read(spoken_wav, dtype="float32")
    audio = np.concatenate([samples, np.zeros(int(1.5 * rate), dtype=np.float32), samples])
    path = tmp_path_factory.mktemp("spoken2") / "fox_twice.wav"
    sf.write(path, audio, rate, subtype="FLOAT")
    return path


@pytest.fixture(scope="session")
def live_bundle() -> Path:
    """The shipped default bundle: the live tests decode the fixture utterance as a user would
    (it emits most of its words: "the que brown farcs jumps of the lazy darg" at step 8,000)."""
    from framegate.engine.recognizer import DEFAULT_BUNDLE

    return DEFAULT_BUNDLE
