"""Endpointing closes utterances by rule and leaves nothing of them behind."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from framegate.engine.endpoint import EndpointConfig, detect_endpoint
from framegate.engine.recognizer import Recognizer

# Short enough to cut the 6.3 s test signal several times, whatever the random model emits.
SHORT_UTTERANCES = EndpointConfig(rule1_min_trailing_silence_s=1.0, rule2_min_trailing_silence_s=0.3,
                                  rule3_min_utterance_length_s=1.5)


def test_config_validate_names_the_bad_field():
    with pytest.raises(ValueError, match="rule2_min_trailing_silence_s"):
        EndpointConfig(rule2_min_trailing_silence_s=0).validate()
    with pytest.raises(ValueError, match="rule3_min_utterance_length_s"):
        EndpointConfig(rule3_min_utterance_length_s=math.nan).validate()
    EndpointConfig(rule1_min_trailing_silence_s=math.inf).validate()


@pytest.mark.parametrize("utterance_s, silence_s, decoded, expected", [
    (2.5, 2.4, False, True),    # rule 1: long silence, nothing decoded
    (2.5, 2.3, False, False),
    (1.0, 0.8, True, True),     # rule 2: pause after tokens
    (1.0, 0.8, False, False),   # ... but not before any token
    (20.0, 0.0, True, True),    # rule 3: long utterance
    (19.9, 0.0, True, False),
])
def test_default_rules(utterance_s, silence_s, decoded, expected):
    assert detect_endpoint(EndpointConfig(), utterance_s, silence_s, decoded) is expected


@pytest.fixture(scope="module")
def recognizer(tiny_bundle: Path) -> Recognizer:
    return Recognizer(tiny_bundle, endpoint=SHORT_UTTERANCES)


def test_after_an_endpoint_the_next_segment_equals_a_fresh_stream(recognizer, speechlike_16k):
    stream = recognizer.create_stream()
    rng = np.random.default_rng(5)
    pos = 0
    endpoints = 0
    while pos < len(speechlike_16k):
        size = int(rng.integers(1, 6000))
        stream.accept_waveform(16000, speechlike_16k[pos:pos + size])
        recognizer.decode(stream)
        endpoints += stream.is_endpoint
        pos += size
    stream.input_finished()
    recognizer.decode(stream)
    segments = stream.result.segments
    assert endpoints >= 2 and len(segments) >= 3
    for segment in segments[1:]:
        start = round(segment.start_s * 16000)
        fresh = recognizer.transcribe(speechlike_16k[start:], 16000).segments[0]
        assert segment.tokens == fresh.tokens
        assert segment.timestamps == pytest.approx([t + segment.start_s for t in fresh.timestamps], abs=1e-6)
        assert segment.end_s == pytest.approx(fresh.end_s + segment.start_s, abs=1e-6)


def test_endpoint_resets_every_per_utterance_state(recognizer, speechlike_16k, stream_until_endpoint):
    """Fed one 10 ms frame at a time, decode stops right after the cut: the new utterance is untouched."""
    stream, fed = stream_until_endpoint(recognizer, speechlike_16k)
    utt = stream.utterance
    assert utt.start_sample > 0 and utt.chunks_decoded == 0
    assert utt.search.tokens == [] and utt.search.frames == 0
    assert utt.search.context.tolist() == [[-1, 0]]
    assert not utt.encoder_state.h.any() and not utt.encoder_state.c.any()
    assert len(utt.samples) == fed - utt.start_sample  # only audio after the cut is kept


def test_result_text_joins_segments(recognizer, speechlike_16k):
    result = recognizer.transcribe(speechlike_16k, 16000)
    assert result.is_final and len(result.segments) >= 2
    assert result.text == " ".join(s.text for s in result.segments)
    assert result.tokens == [t for s in result.segments for t in s.tokens]
