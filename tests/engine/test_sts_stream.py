"""Two-channel (separator-transducer-segmenter) bundles in the engine: turns, streaming, bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framegate.engine.bundle import Bundle
from framegate.engine.decoding import SearchState
from framegate.engine.errors import BundleError
from framegate.engine.recognizer import Recognizer
from framegate.engine.turns import ChannelSearchState, TurnLog, merge_in_time, recognize_turns

SR = 16000


@pytest.fixture(scope="module")
def sts_bundle(tiny_sts) -> Path:
    return tiny_sts[1]


@pytest.fixture(scope="module")
def two_voices(speechlike_16k: np.ndarray) -> np.ndarray:
    """Two speech-like signals, the second lower-pitched and delayed so they overlap for ~2 s."""
    second = np.interp(np.arange(0, len(speechlike_16k), 0.8), np.arange(len(speechlike_16k)), speechlike_16k)
    out = np.zeros(int(len(speechlike_16k) + 4.5 * SR) + 123, np.float32)
    out[:len(speechlike_16k)] += speechlike_16k
    start = int(4.5 * SR)
    out[start:start + len(second)] += 0.8 * second[:len(out) - start].astype(np.float32)
    return out


def _stream(recognizer: Recognizer, samples: np.ndarray, blocks: list[int]):
    stream = recognizer.create_stream()
    position, partial_seen = 0, []
    for size in blocks:
        stream.accept_waveform(SR, samples[position:position + size])
        recognizer.decode(stream)
        partial_seen += [s for s in stream.result.segments if s.is_open]
        position += size
    stream.accept_waveform(SR, samples[position:])
    stream.input_finished()
    recognizer.decode(stream)
    return stream, partial_seen


def test_streaming_equals_offline_for_random_chunks(sts_bundle, two_voices):
    recognizer = Recognizer(sts_bundle, endpoint=None)
    offline = recognize_turns(recognizer.bundle, two_voices)
    assert {s.channel for s in offline} == {0, 1}  # the fixture opens turns on both channels
    assert any(s.end_s < len(two_voices) / SR - 0.2 for s in offline)  # and closes some with <eot>
    rng = np.random.default_rng(11)
    for _ in range(4):
        blocks = list(rng.integers(1, 9000, size=30))
        stream, _ = _stream(recognizer, two_voices, blocks)
        result = stream.result
        assert result.is_final and result.segments == offline
        assert result.text == merge_in_time(offline)[0]


def test_open_turns_show_as_partial_segments_that_close_in_place(sts_bundle, two_voices):
    recognizer = Recognizer(sts_bundle, endpoint=None)
    stream, partial = _stream(recognizer, two_voices, [1600] * (len(two_voices) // 1600))
    final = stream.result.segments
    assert partial, "no partial segment was ever shown"
    for seg in partial:
        assert any(f.channel == seg.channel and f.start_s == seg.start_s and f.end_s >= seg.end_s
                   and f.text.startswith(seg.text.rsplit(" ", 1)[0]) for f in final)
    assert not any(s.is_open for s in final)


def test_text_is_every_word_of_every_turn_in_time_order(sts_bundle, two_voices):
    result = Recognizer(sts_bundle).transcribe(two_voices, SR)
    starts = [t for p, t in zip(result.tokens, result.timestamps) if p.startswith("▁")]
    assert starts == sorted(starts)
    assert sorted(result.text.split()) == sorted(w for seg in result.segments for w in seg.text.split())


def _state(tokens_per_channel: list[list[int]], frames: int = 50) -> ChannelSearchState:
    channels = []
    for tokens in tokens_per_channel:
        s = SearchState(context=np.zeros((1, 2), np.int64), decoder_out=np.zeros((1, 4), np.float32))
        s.tokens, s.token_frames, s.frames = list(tokens), list(range(1, 2 * len(tokens), 2)), frames
        channels.append(s)
    return ChannelSearchState(channels, [False] * len(channels), eot_id=6)


def test_beam_search_on_both_channels_streams_as_its_offline_reference(sts_bundle, two_voices):
    recognizer = Recognizer(sts_bundle, endpoint=None, beam=4)
    assert recognizer.search_settings["method"] == "modified_beam_search"
    assert recognizer.search_settings["channels"] == 2
    offline = recognize_turns(recognizer.bundle, two_voices, beam=4)
    assert {s.channel for s in offline} == {0, 1}
    rng = np.random.default_rng(12)
    for _ in range(2):
        stream, _ = _stream(recognizer, two_voices, list(rng.integers(1, 9000, size=30)))
        assert stream.result.is_final and stream.result.segments == offline


def test_turn_rules_for_imperfect_token_streams():
    pieces = ["<blk>", "<unk>", "▁a", "b", "▁c", "<sot>", "<eot>"]
    log = TurnLog(pieces, sot_id=5, eot_id=6, channels=2)
    # ch0: stray <eot>, word opens a turn, duplicate <sot>, close; empty turn dropped; open at the end
    state = _state([[6, 2, 5, 3, 6, 5, 6, 5, 4], [5, 2, 6]])
    segments = log.segments(state, start_s=1.0, frame_s=0.04, end_s=9.0, final=False)
    texts = [(s.channel, s.text, s.is_open) for s in segments]
    assert texts == [(0, "ab", False), (1, "a", False), (0, "c", True)]
    assert segments[0].start_s == pytest.approx(1.0 + 3 * 0.04) and segments[0].end_s == pytest.approx(1.0 + 9 * 0.04)
    final = log.segments(state, start_s=1.0, frame_s=0.04, end_s=9.0, final=True)
    assert final[-1].end_s == 9.0 and not final[-1].is_open
    # a cut while channel 0's turn is open: it carries over and continues in the next utterance
    assert [s.text for s in log.close(state, start_s=1.0, frame_s=0.04)] == ["ab", "a"]
    nxt = _state([[], []])
    log.resume(nxt)
    assert nxt.open == [True, False] and nxt.trailing_blank_frames == 0
    nxt.channels[0].tokens, nxt.channels[0].token_frames = [2, 6], [1, 3]
    assert nxt.open == [False, False]  # the carried turn closed with its <eot>
    carried = log.segments(nxt, start_s=3.0, frame_s=0.04, end_s=9.0, final=True)
    assert [(s.text, s.start_s) for s in carried] == [("c a", pytest.approx(1.0 + 15 * 0.04))]  # its <sot> frame


def test_silence_gives_well_formed_output(sts_bundle):
    """(Random weights say things over silence too; a trained model's silence is covered by the benchmark.)"""
    result = Recognizer(sts_bundle).transcribe(np.zeros(5 * SR, np.float32), SR)
    assert result.is_final
    assert all(0 <= s.start_s <= s.end_s <= 5.0 and s.channel in (0, 1) and not s.is_open for s in result.segments)


def test_one_voice_and_three_voices_give_segments_on_the_two_channels(sts_bundle, speechlike_16k):
    recognizer = Recognizer(sts_bundle)
    one = recognizer.transcribe(speechlike_16k, SR)
    shifted = [np.roll(speechlike_16k, k * 4000) * g for k, g in ((0, 1.0), (1, 0.8), (2, 0.6))]
    three = recognizer.transcribe(np.sum(shifted, axis=0).astype(np.float32), SR)
    for result in (one, three):
        assert result.is_final
        assert all(s.channel in (0, 1) and s.start_s <= s.end_s and s.text for s in result.segments)


def test_ten_minutes_of_conversation_stay_bounded(sts_bundle, two_voices):
    """Endpoints (the 20 s utterance rule inside long turns) keep restarting the model state;
    the caller takes closed turns as they come, so the stream itself holds only the current ones."""
    recognizer = Recognizer(sts_bundle)
    stream = recognizer.create_stream()
    taken, endpoints = [], 0
    block = two_voices
    for _ in range(int(600 * SR / len(block)) + 1):
        stream.accept_waveform(SR, block)
        recognizer.decode(stream)
        endpoints += stream.is_endpoint
        taken += stream.take_segments()
    stream.input_finished()
    recognizer.decode(stream)
    taken += stream.take_segments()
    final = stream.result
    assert endpoints >= 600 / 21 - 1
    assert len(final.segments) < 20  # only the last utterance's turns are still held
    assert all(a.start_s <= b.start_s or a.channel != b.channel for a, b in zip(taken, taken[1:]))
    assert taken and max(s.end_s for s in taken + final.segments) <= 600 + len(block) / SR


def test_transcribe_json_lists_turn_segments_with_exactly_the_documented_keys(sts_bundle, two_voices, tmp_path, capsys):
    from framegate.engine.cli import main

    path = tmp_path / "two.wav"
    sf.write(path, two_voices, SR, subtype="FLOAT")
    assert main(["transcribe", "--model", str(sts_bundle), "--json", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["segments"] and all(set(s) == {"channel", "start", "end", "text"} for s in record["segments"])
    stream_text = Recognizer(sts_bundle).transcribe(two_voices, SR).text
    assert record["text"] == stream_text


def test_a_bundle_whose_sts_section_disagrees_is_refused(sts_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sts_bundle, broken)
    manifest = json.loads((broken / "bundle.json").read_text())
    manifest["sts"]["channels"] = 3
    (broken / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="sts.channels"):
        Bundle.load(broken)
    manifest["sts"]["channels"] = 2
    manifest["states"][2]["shape"] = [1, 3, 16]
    (broken / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="states"):
        Bundle.load(broken)


def test_mic_refuses_a_two_channel_bundle_with_one_line(sts_bundle, two_voices, tmp_path, capsys):
    from framegate.engine.cli import main

    path = tmp_path / "two.wav"
    sf.write(path, two_voices, SR, subtype="FLOAT")
    assert main(["mic", "--model", str(sts_bundle), "--from-file", str(path)]) == 2
    assert "two-channel" in capsys.readouterr().err
