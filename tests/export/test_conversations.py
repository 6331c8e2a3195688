"""The conversation simulator: determinism, splits, turn boundaries, overlaps, windows, channels."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framegate.export.conversations import (AudioSource, ConversationConfig, ConversationError, ConversationSimulator,
                                            assign_channels, cut_windows, load_utterances, overlap_ratio,
                                            read_conversations, speech_bounds, write_conversations)

SR = 16000
LEAD_S, SPEECH_S = 0.4, 1.2  # every fake utterance: 0.4 s of quiet noise, then 1.2 s (+k*0.1) of "voice"


def _voice(pitch: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * pitch * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three splits of fake voices (tones of different pitch) with known speech spans, as corpus rows."""
    root = tmp_path_factory.mktemp("tone_corpus")
    rng = np.random.default_rng(0)
    rows = []
    voices = {"train": [("a1", "fa", 150), ("a2", "fb", 210), ("a3", "fc", 260)],
              "test": [("t1", "ft", 120), ("t2", "fu", 300)], "dev": [("d1", "fd", 180), ("d2", "fe", 240)]}
    for split, split_voices in voices.items():
        (root / "audio" / split).mkdir(parents=True)
        for speaker, family, pitch in split_voices:
            for k in range(5):
                noise = 0.001 * rng.standard_normal(int((2 * LEAD_S + SPEECH_S + 0.1 * k) * SR)).astype(np.float32)
                lead = int(LEAD_S * SR)
                voice = _voice(pitch, SPEECH_S + 0.1 * k, rng)
                noise[lead:lead + len(voice)] += voice
                audio = f"audio/{split}/{speaker}-{k}.flac"
                sf.write(root / audio, noise, SR, subtype="PCM_16", format="FLAC")
                rows.append({"audio": audio, "text": f"{speaker} says {k}", "speaker": speaker, "family": family,
                             "split": split, "duration_s": len(noise) / SR})
        sf.write(root / "audio" / split / "empty.flac", np.zeros(SR, np.float32), SR, format="FLAC")
        rows.append({"audio": f"audio/{split}/empty.flac", "text": "", "speaker": "", "family": "", "split": split})
    (root / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def train_sim(tone_corpus: Path) -> ConversationSimulator:
    return ConversationSimulator(load_utterances(tone_corpus / "all.jsonl")["train"], AudioSource(tone_corpus))


def test_speech_bounds_trim_leading_and_trailing_silence():
    rng = np.random.default_rng(1)
    signal = 0.001 * rng.standard_normal(SR * 2).astype(np.float32)
    signal[8000:24000] += _voice(200, 1.0, rng)
    start, end = speech_bounds(signal)
    assert abs(start - 8000) <= 160 and abs(end - 24000) <= 160
    assert speech_bounds(np.zeros(SR, np.float32)) is None


def test_same_seed_gives_the_same_conversation_and_another_seed_another(train_sim):
    a, b, c = train_sim.draw((7, 3)), train_sim.draw((7, 3)), train_sim.draw((7, 4))
    assert np.array_equal(a.audio, b.audio) and a.turns == b.turns
    assert not (len(a.audio) == len(c.audio) and np.array_equal(a.audio, c.audio))


def test_written_conversations_are_deterministic_and_stay_inside_their_split(tone_corpus, tmp_path):
    first = write_conversations(tone_corpus / "all.jsonl", tmp_path / "a", seed=5, count_per_split=4)
    second = write_conversations(tone_corpus / "all.jsonl", tmp_path / "b", seed=5, count_per_split=4)
    assert set(first) == {"train", "dev", "test"}
    for split in first:
        assert first[split].read_text() == second[split].read_text()
        for row in read_conversations(first[split]):
            assert {t.speaker[0] for t in row["turns"]} == {{"train": "a", "dev": "d", "test": "t"}[split]}
            assert all(t.source.startswith(f"audio/{split}/") for t in row["turns"])
            audio, rate = sf.read(first[split].parent / row["audio"])
            assert rate == SR and abs(len(audio) / SR - row["duration_s"]) < 1e-3


def test_turns_alternate_between_two_voices_of_different_families_with_three_to_eight_turns(train_sim):
    for i in range(20):
        turns = train_sim.draw((1, i)).turns
        assert 3 <= len(turns) <= 8
        speakers = [t.speaker for t in turns]
        assert len(set(speakers)) == 2 and all(x != y for x, y in zip(speakers, speakers[1:]))
        assert len({t.source for t in turns}) == len(turns)  # no sentence said twice


def test_turn_boundaries_are_where_the_trimmed_speech_lands(tone_corpus):
    config = ConversationConfig(overlap_turn_fraction=(0.0, 0.0), noise_snr_db=(200.0, 200.0),
                                pause_s=(0.4, 0.8), level_db=(0.0, 0.0))
    sim = ConversationSimulator(load_utterances(tone_corpus / "all.jsonl")["train"], AudioSource(tone_corpus), config)
    conv = sim.draw((2, 0))
    gain = float(np.abs(conv.audio).max()) / 0.39  # the simulator rescales the mix
    for turn in conv.turns:
        expected = SPEECH_S + 0.1 * int(turn.text.split()[-1])
        assert turn.end - turn.start == pytest.approx(expected, abs=0.02)
        before = conv.audio[int((turn.start - 0.3) * SR):int((turn.start - 0.08) * SR)]
        inside = conv.audio[int((turn.start + 0.02) * SR):int((turn.start + 0.2) * SR)]
        after = conv.audio[int((turn.end + 0.08) * SR):int((turn.end + 0.2) * SR)]
        assert np.abs(before).max() < 0.05 * gain and np.abs(after).max() < 0.05 * gain
        assert np.sqrt(np.mean(inside ** 2)) > 0.1 * gain


def test_overlaps_follow_the_configured_distribution(train_sim, tone_corpus):
    overlapping = total = 0
    for i in range(60):
        turns = train_sim.draw((3, i)).turns
        for prev, turn in zip(turns, turns[1:]):
            total += 1
            if turn.start < max(t.end for t in turns[:turns.index(turn)]):
                overlapping += 1
                assert prev.end - turn.start <= 3.0 + 1e-6  # never reaches back further than overlap_s
    assert 0.1 < overlapping / total < 0.4  # the share is drawn per conversation from U(0, 0.5)
    never = ConversationSimulator(load_utterances(tone_corpus / "all.jsonl")["train"], AudioSource(tone_corpus),
                                  ConversationConfig(overlap_turn_fraction=(0.0, 0.0)))
    assert all(never.draw((4, i)).overlap_ratio == 0.0 for i in range(10))
    always = ConversationSimulator(load_utterances(tone_corpus / "all.jsonl")["train"], AudioSource(tone_corpus),
                                   ConversationConfig(overlap_turn_fraction=(1.0, 1.0), overlap_s=(0.5, 0.5)))
    for i in range(10):
        turns = always.draw((5, i)).turns
        assert all(b.start < a.end for a, b in zip(turns, turns[1:]))
        assert always.draw((5, i)).overlap_ratio > 0


def test_at_most_two_voices_at_once_and_channels_follow_the_first_free_rule(train_sim):
    for i in range(30):
        turns = train_sim.draw((6, i)).turns
        assert assign_channels([(t.start, t.end) for t in turns]) == [t.channel for t in turns]
        for t in turns:
            assert sum(1 for u in turns if u.start <= t.start < u.end) <= 2


def test_channel_assignment_takes_the_first_free_channel_by_start_time():
    assert assign_channels([(0, 2), (1, 3), (2.5, 4), (3.5, 5)]) == [0, 1, 0, 1]
    assert assign_channels([(5, 6), (0, 1), (0.5, 2)]) == [0, 0, 1]  # order by start, not by list position
    assert assign_channels([(0, 10), (1, 2), (3, 4)]) == [0, 1, 1]
    with pytest.raises(ValueError, match="more than 2 turns"):
        assign_channels([(0, 3), (1, 3), (2, 3)])


def test_overlap_ratio_counts_two_voice_time_over_speech_time():
    from framegate.export.conversations import Turn

    turns = [Turn("a", 0, 0.0, 2.0, "x"), Turn("b", 1, 1.0, 3.0, "y"), Turn("a", 0, 4.0, 5.0, "z")]
    assert overlap_ratio(turns) == pytest.approx(1.0 / 4.0)


def test_windows_cut_at_silences_and_keep_whole_turns(train_sim):
    for i in range(20):
        conv = train_sim.draw((8, i))
        windows = cut_windows(conv, target_s=4.0, max_s=60.0)
        assert sorted(t.text for w in windows for t in w.turns) == sorted(t.text for t in conv.turns)
        for w in windows:
            length = (w.end_sample - w.start_sample) / SR
            assert all(0 <= t.start < t.end <= length for t in w.turns)
            ordered = sorted(w.turns, key=lambda t: t.start)
            several_islands = any(t.start >= max(u.end for u in ordered[:k]) for k, t in enumerate(ordered) if k)
            if several_islands:  # joined stretches of speech stay within the target
                assert length <= 4.0 + 1e-3
            spans = [(t.start, t.end) for t in w.turns]
            assert [t.channel for t in w.turns] == assign_channels(spans)
        for a, b in zip(windows, windows[1:]):
            assert a.end_sample == b.start_sample


def test_a_stretch_of_speech_longer_than_the_window_limit_is_left_out(train_sim):
    conv = train_sim.draw((9, 0))
    longest = max(t.end - t.start for t in conv.turns)
    windows = cut_windows(conv, target_s=1.0, max_s=longest - 0.01)
    assert sum(len(w.turns) for w in windows) < len(conv.turns)
    assert all((w.end_sample - w.start_sample) / SR <= longest - 0.01 for w in windows)


def test_a_split_with_one_voice_is_a_clear_error(tone_corpus):
    utts = [u for u in load_utterances(tone_corpus / "all.jsonl")["test"] if u.speaker == "t1"]
    with pytest.raises(ConversationError, match="two different voices"):
        ConversationSimulator(utts, AudioSource(tone_corpus))
