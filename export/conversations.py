"""Two-party conversations simulated from the single-speaker corpus (issue 8).

A conversation is three to eight turns of two different voices taking turns, A B A B ...;
each turn is one corpus utterance whose speech (leading and trailing silence trimmed by
energy) is placed after a pause or overlapping the previous turn by 0.1 s to several
seconds. The reference turn boundaries are where that trimmed speech lands in the mix, so
`start`/`end` are when the voice really starts and stops, not where its file had margins.

Everything is a pure function of (manifest rows, seed, conversation index, config): the
same call gives the same audio and references. Conversations are built inside one split
only (a manifest's rows are grouped by their `split`), so a dev/test conversation only
ever uses held-out voice families, exactly as the corpus splits them.

Training draws conversations on the fly from a seed that never repeats (`draw`) and cuts
them into windows of about 10 s at silences (`cut_windows`), so the transducer lattice of
a window fits in memory and no window splits a word.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import soundfile as sf

from framegate.engine.features import SAMPLE_RATE
from framegate.engine.errors import FramegateError

FRAME = SAMPLE_RATE // 100  # 10 ms energy frames
EDGE_S = 0.05              # audio kept beyond the trimmed speech on each side (soft onsets)
MIN_SAME_SPEAKER_GAP_S = 0.15
SCHEMA = "framegate.conversations/1"


class ConversationError(FramegateError):
    """Conversations cannot be simulated from this manifest (too few voices or utterances)."""


@dataclass(frozen=True)
class ConversationConfig:
    """The distribution conversations are drawn from; ranges are (low, high), seconds unless named.

    overlap_turn_fraction: per conversation, the share of turns (after the first) that start
        before the previous turn has ended is drawn uniformly from this range.
    overlap_s: how far such a turn reaches back into the previous one (log-uniform), limited so
        that it starts after the previous turn started and after its own voice's last turn.
    pause_s: silence before a turn that does not overlap (uniform).
    level_db: the second voice's level relative to the first (uniform).
    noise_snr_db: a low background noise over the whole conversation, so pauses are not
        digital silence (uniform; SNR against the speech's RMS).
    """

    min_turns: int = 3
    max_turns: int = 8
    overlap_turn_fraction: tuple[float, float] = (0.0, 0.5)
    overlap_s: tuple[float, float] = (0.1, 3.0)
    pause_s: tuple[float, float] = (0.2, 1.5)
    lead_s: tuple[float, float] = (0.1, 0.6)
    level_db: tuple[float, float] = (-5.0, 5.0)
    noise_snr_db: tuple[float, float] = (25.0, 45.0)

    def validate(self) -> None:
        if not 1 <= self.min_turns <= self.max_turns:
            raise ValueError(f"ConversationConfig: need 1 <= min_turns <= max_turns, got {self.min_turns}, "
                             f"{self.max_turns}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"ConversationConfig.{f.name} must be a (low, high) range, got {value!r}")
        if not 0 <= self.overlap_turn_fraction[0] <= self.overlap_turn_fraction[1] <= 1:
            raise ValueError("ConversationConfig.overlap_turn_fraction must lie in [0, 1]")
        if self.overlap_s[0] <= 0 or self.pause_s[0] < 0 or self.lead_s[0] < 0:
            raise ValueError("ConversationConfig: overlap_s must be positive, pause_s and lead_s non-negative")

    @staticmethod
    def from_dict(values: dict) -> "ConversationConfig":
        known = {f.name for f in fields(ConversationConfig)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown conversation settings {sorted(unknown)} (known: {sorted(known)})")
        return ConversationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class Turn:
    """One reference turn: times in seconds in the conversation, from the trimmed speech."""

    speaker: str
    channel: int
    start: float
    end: float
    text: str
    source: str = ""  # the corpus utterance (manifest-relative audio path), to play the turn alone

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Conversation:
    audio: np.ndarray  # 16 kHz mono float32
    turns: list[Turn]
    split: str

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def overlap_ratio(self) -> float:
        return overlap_ratio(self.turns)


@dataclass(frozen=True)
class Utterance:
    """A corpus utterance usable as a turn: its speech span in its own file, in samples."""

    audio: str
    text: str
    speaker: str
    family: str
    split: str
    speech_start: int
    speech_end: int


# -- speech bounds, overlap, channels -------------------------------------------------------
def speech_bounds(samples: np.ndarray, floor_db: float = -35.0, noise_margin_db: float = 10.0
                  ) -> tuple[int, int] | None:
    """(first, last + 1) sample of speech, by 10 ms frame energy; None when nothing is speech.

    A frame is speech when it is within `floor_db` of the loudest frame and `noise_margin_db`
    above the file's noise floor (its 10th-percentile frame), so training audio with added
    noise is trimmed to the voice rather than to the noise.
    """
    n_frames = len(samples) // FRAME
    if n_frames == 0:
        return None
    energy = np.sqrt(np.mean(samples[:n_frames * FRAME].reshape(n_frames, FRAME).astype(np.float64) ** 2, axis=1))
    db = 20 * np.log10(energy + 1e-10)
    if db.max() < -60:
        return None
    threshold = max(db.max() + floor_db, np.percentile(db, 10) + noise_margin_db)
    voiced = np.flatnonzero(db > threshold)
    if len(voiced) == 0:
        return None
    return int(voiced[0] * FRAME), int((voiced[-1] + 1) * FRAME)


def overlap_ratio(turns: list[Turn]) -> float:
    """Seconds where two or more voices speak over seconds where at least one does."""
    events = sorted([(t.start, 1) for t in turns] + [(t.end, -1) for t in turns])
    active, last, speech, overlap = 0, 0.0, 0.0, 0.0
    for time, step in events:
        if active >= 1:
            speech += time - last
        if active >= 2:
            overlap += time - last
        active += step
        last = time
    return overlap / speech if speech > 0 else 0.0


def assign_channels(spans: list[tuple[float, float]], channels: int = 2) -> list[int]:
    """The channel of each (start, end) span: the first channel free at its start, by start time.

    No permutation search (DESIGN.md): turns are taken in order of start time and each goes
    to the lowest-numbered channel whose previous turn has ended. More simultaneous spans
    than channels is a ValueError naming the time.
    """
    free_at = [float("-inf")] * channels
    out = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda k: (spans[k][0], spans[k][1])):
        start, end = spans[i]
        for c in range(channels):
            if free_at[c] <= start:
                out[i] = c
                free_at[c] = end
                break
        else:
            raise ValueError(f"more than {channels} turns are active at {start:.2f} s; "
                             f"the model has {channels} output channels")
    return out


# -- the corpus side ----------------------------------------------------------------------
def load_utterances(manifest: Path) -> dict[str, list[Utterance]]:
    """Usable turns of a manifest by split: rows with text whose audio has speech."""
    manifest = Path(manifest)
    by_split: dict[str, list[Utterance]] = defaultdict(list)
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if not row.get("text", "").strip():
            continue
        samples, rate = sf.read(manifest.parent / row["audio"], dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ConversationError(f"{row['audio']}: corpus audio must be {SAMPLE_RATE} Hz, got {rate}")
        bounds = speech_bounds(samples.mean(axis=1))
        if bounds is None:
            continue
        by_split[row.get("split", "")].append(Utterance(
            audio=row["audio"], text=row["text"], speaker=row["speaker"], family=row.get("family") or row["speaker"],
            split=row.get("split", ""), speech_start=bounds[0], speech_end=bounds[1]))
    if not by_split:
        raise ConversationError(f"{manifest}: no utterance with text and speech")
    return dict(by_split)


class AudioSource:
    """Reads (and caches) the trimmed speech of corpus utterances, with EDGE_S beyond each side."""

    def __init__(self, root: Path, cache: bool = True) -> None:
        self.root = Path(root)
        self._cache: dict[str, np.ndarray] | None = {} if cache else None

    def read(self, utt: Utterance) -> np.ndarray:
        """The utterance's whole file as float32 mono."""
        key = utt.audio
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        samples, _ = sf.read(self.root / utt.audio, dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
        if self._cache is not None:
            self._cache[key] = samples
        return samples

    def speech(self, utt: Utterance) -> tuple[np.ndarray, int]:
        """(samples, offset of the speech start within them)."""
        samples = self.read(utt)
        edge = round(EDGE_S * SAMPLE_RATE)
        lo, hi = max(0, utt.speech_start - edge), min(len(samples), utt.speech_end + edge)
        piece = samples[lo:hi].copy()
        fade = min(80, len(piece) // 4)
        if fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            piece[:fade] *= ramp
            piece[-fade:] *= ramp[::-1]
        return piece, utt.speech_start - lo


class ConversationSimulator:
    """Draws conversations from one split's utterances (see the module docstring)."""

    def __init__(self, utterances: list[Utterance], source: AudioSource, config: ConversationConfig = ConversationConfig()
                 ) -> None:
        config.validate()
        self.config = config
        self.source = source
        splits = {u.split for u in utterances}
        if len(splits) > 1:
            raise ConversationError(f"a conversation stays inside one split; got utterances of {sorted(splits)}")
        self.split = splits.pop() if splits else ""
        self._by_speaker: dict[str, list[Utterance]] = defaultdict(list)
        for u in utterances:
            self._by_speaker[u.speaker].append(u)
        self._speakers = sorted(self._by_speaker)
        if len(self._speakers) < 2:
            raise ConversationError(f"split {self.split!r}: conversations need two different voices, found "
                                    f"{len(self._speakers)}")

    def draw(self, seed: int | tuple[int, ...]) -> Conversation:
        """The conversation of `seed` (an int or a tuple such as (seed, index))."""
        rng = np.random.default_rng(seed)
        cfg = self.config
        n_turns = int(rng.integers(cfg.min_turns, cfg.max_turns + 1))
        voice_a, voice_b, n_turns = self._pick_voices(rng, n_turns)
        per_voice = {voice_a: -(-n_turns // 2), voice_b: n_turns // 2}
        picks = {v: list(rng.permutation(len(self._by_speaker[v]))[:per_voice[v]]) for v in (voice_a, voice_b)}
        gain = {voice_a: 1.0, voice_b: float(10 ** (rng.uniform(*cfg.level_db) / 20))}
        overlap_p = rng.uniform(*cfg.overlap_turn_fraction)
        pieces, spans, utts = [], [], []
        cursor = rng.uniform(*cfg.lead_s)  # where the last-ending turn's speech ends so far
        last_end = {voice_a: float("-inf"), voice_b: float("-inf")}
        prev_start = float("-inf")
        for k in range(n_turns):
            voice = voice_a if k % 2 == 0 else voice_b
            utt = self._by_speaker[voice][picks[voice].pop(0)]
            samples, speech_offset = self.source.speech(utt)
            speech_s = (utt.speech_end - utt.speech_start) / SAMPLE_RATE
            if k == 0:
                start = cursor
            elif rng.uniform() < overlap_p:
                reach = float(np.exp(rng.uniform(*np.log(cfg.overlap_s))))
                start = max(cursor - reach, prev_start + 0.2, last_end[voice] + MIN_SAME_SPEAKER_GAP_S)
            else:
                start = max(cursor + rng.uniform(*cfg.pause_s), last_end[voice] + MIN_SAME_SPEAKER_GAP_S)
            start = round(start * SAMPLE_RATE) / SAMPLE_RATE
            end = start + speech_s
            pieces.append((samples * gain[voice], round(start * SAMPLE_RATE) - speech_offset))
            spans.append((start, end))
            utts.append(utt)
            last_end[voice] = end
            prev_start = start
            cursor = max(cursor, end)
        tail = rng.uniform(*cfg.lead_s)
        total = max(round((cursor + tail) * SAMPLE_RATE), max(off + len(p) for p, off in pieces))
        audio = np.zeros(total, dtype=np.float32)
        for samples, offset in pieces:
            lo = max(0, offset)
            audio[lo:offset + len(samples)] += samples[lo - offset:]
        speech_rms = float(np.sqrt(np.mean(np.concatenate([p for p, _ in pieces]) ** 2))) + 1e-9
        noise = rng.standard_normal(total).astype(np.float32)
        audio += noise * speech_rms * float(10 ** (-rng.uniform(*cfg.noise_snr_db) / 20))
        audio *= float(10 ** (rng.uniform(-6.0, -1.0) / 20)) / max(float(np.abs(audio).max()), 1e-6)
        channels = assign_channels(spans)
        turns = [Turn(speaker=u.speaker, channel=c, start=round(s, 4), end=round(e, 4), text=u.text, source=u.audio)
                 for u, (s, e), c in zip(utts, spans, channels)]
        return Conversation(audio=audio.astype(np.float32), turns=turns, split=self.split)

    def _pick_voices(self, rng: np.random.Generator, n_turns: int) -> tuple[str, str, int]:
        """Two voices with enough sentences for the turns (a voice never says a sentence twice), of
        different families where the split allows, and the turn count; fewer turns than drawn
        only when no two voices of the split have enough sentences."""
        counts = np.array([len(self._by_speaker[s]) for s in self._speakers], dtype=np.float64)
        first, second = sorted(counts)[-1], sorted(counts)[-2]
        n_turns = min(n_turns, int(2 * second + (1 if first > second else 0)))
        pool = np.flatnonzero(counts >= -(-n_turns // 2))
        voice_a = self._speakers[int(rng.choice(pool, p=counts[pool] / counts[pool].sum()))]
        family_a = self._by_speaker[voice_a][0].family
        others = [i for i in np.flatnonzero(counts >= n_turns // 2) if self._speakers[i] != voice_a]
        other_family = [i for i in others if self._by_speaker[self._speakers[i]][0].family != family_a]
        others = np.array(other_family or others)
        voice_b = self._speakers[int(rng.choice(others, p=counts[others] / counts[others].sum()))]
        return voice_a, voice_b, n_turns


# -- training windows -------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """A stretch of a conversation cut at silences: samples [start, end) and its turns, re-timed."""

    start_sample: int
    end_sample: int
    turns: list[Turn] = field(default_factory=list)


def cut_windows(conversation: Conversation, target_s: float = 10.0, max_s: float = 16.0) -> list[Window]:
    """Cut at silences into windows of at most about `target_s` (never above `max_s`).

    The cut points are the midpoints of pauses between speech islands (stretches where some
    voice speaks); islands are joined greedily while the window stays under `target_s`. An
    island longer than `max_s` (a long chain of overlaps) cannot be cut without splitting
    words and is left out. Turn times in a window are relative to its start; channels are
    re-assigned inside the window (first free channel by start time).
    """
    islands: list[list[Turn]] = []
    island_end = float("-inf")
    for turn in sorted(conversation.turns, key=lambda t: t.start):
        if islands and turn.start < island_end:
            islands[-1].append(turn)
            island_end = max(island_end, turn.end)
        else:
            islands.append([turn])
            island_end = turn.end
    bounds = [(min(t.start for t in isl), max(t.end for t in isl)) for isl in islands]
    cuts = [0.0] + [(bounds[i][1] + bounds[i + 1][0]) / 2 for i in range(len(bounds) - 1)] + [conversation.duration_s]
    windows: list[Window] = []
    i = 0
    while i < len(islands):
        if cuts[i + 1] - cuts[i] > max_s:
            i += 1
            continue
        j = i + 1
        while j < len(islands) and cuts[j + 1] - cuts[i] <= target_s:
            j += 1
        lo, hi = cuts[i], cuts[j]
        members = [t for isl in islands[i:j] for t in isl]
        spans = [(t.start - lo, t.end - lo) for t in members]
        channels = assign_channels(spans)
        turns = [Turn(t.speaker, c, round(s, 4), round(e, 4), t.text, t.source)
                 for t, (s, e), c in zip(members, spans, channels)]
        windows.append(Window(round(lo * SAMPLE_RATE), round(hi * SAMPLE_RATE), turns))
        i = j
    return windows


# -- on disk ----------------------------------------------------------------------------------
def write_conversations(manifest: Path, out_dir: Path, seed: int, count_per_split: int = 100,
                        config: ConversationConfig = ConversationConfig()) -> dict[str, Path]:
    """Simulate `count_per_split` conversations for every split in `manifest` into `out_dir`.

    Writes audio/<split>/<split>-NNNNN.flac and <split>.jsonl (one conversation a line:
    audio, duration_s, turns [{speaker, channel, start, end, text, source}], overlap_ratio,
    split, seed, index) and returns the manifest path per split. `source` is relative to
    `source_root`, recorded on every line, so a turn can be played alone.
    """
    if count_per_split < 1:
        raise ValueError(f"count_per_split must be >= 1, got {count_per_split}")
    manifest, out_dir = Path(manifest), Path(out_dir)
    by_split = load_utterances(manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, utterances in sorted(by_split.items()):
        simulator = ConversationSimulator(utterances, AudioSource(manifest.parent), config)
        name = split or "conversations"
        (out_dir / "audio" / name).mkdir(parents=True, exist_ok=True)
        rows = []
        for index in range(count_per_split):
            conv = simulator.draw((seed, index))
            audio = Path("audio") / name / f"{name}-{index:05d}.flac"
            sf.write(out_dir / audio, conv.audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
            rows.append({"audio": str(audio), "duration_s": round(conv.duration_s, 4),
                         "turns": [t.to_dict() for t in conv.turns], "overlap_ratio": round(conv.overlap_ratio, 4),
                         "split": split, "seed": seed, "index": index,
                         "source_root": str(manifest.parent.resolve()), "schema": SCHEMA})
        path = out_dir / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        written[split] = path
    (out_dir / "config.json").write_text(json.dumps({"seed": seed, "from": str(manifest),
                                                     "config": asdict(config)}, indent=2) + "\n", encoding="utf-8")
    return written


def read_conversations(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r["turns"] = [Turn(**t) for t in r["turns"]]
    return rows
