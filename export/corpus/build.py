"""Build the synthetic corpus: plan utterances from a seed, render them in a process pool, write FLAC + JSONL.

Everything random is drawn either while planning (one Generator from `seed`) or inside an utterance
from a Generator seeded by (seed, split, index), so the corpus is identical for any number of workers.
"""

import contextlib
import json
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from framegate.export.corpus import CorpusError
from framegate.export.corpus.augment import augment, babble, coloured_noise, normalize_peak
from framegate.export.corpus.journal import JOURNAL_NAME, append, exclusive, open_journal, read_journal
from framegate.export.corpus.synth import SAMPLE_RATE, check_voices, synthesize
from framegate.export.corpus.text import SPLITS, load_sentences, split_sentences
from framegate.export.corpus.voices import LICENCES, RECORDED_SYNTHESIZERS, Voice, voices_by_split
from framegate.export.worker_pool import clean_context

# Share of utterances per synthesizer (renormalized over those a split has): recorded speakers get
# most of it; piper (the slowest, ~20x real time on one core) is capped.
SYNTHESIZER_SHARES = {"espeak-ng": 0.25, "mbrola": 0.22, "festival": 0.15, "rhvoice": 0.13, "flite": 0.12, "piper": 0.07, "pico": 0.06}
WORDS_PER_S = 3.7  # planning estimate at rate 1.0 (measured), plus the trimmed margins below
MARGINS_S = 0.3
EMPTY_FRACTION = 0.03
BABBLE_BANK_SIZE = 6
RATE_RANGE = (0.8, 1.25)
PITCH_RANGE = (0.88, 1.12)
MANIFEST_KEYS = ("audio", "text", "speaker", "synthesizer", "accent", "gender", "duration_s", "family", "split")


@dataclass(frozen=True)
class Job:
    """One utterance to render; `voice` None means a silence- or noise-only segment of `empty_s` seconds."""

    split: str
    index: int
    seed: int
    text: str = ""
    voice: Voice | None = None
    rate: float = 1.0
    pitch: float = 1.0
    empty_s: float = 0.0

    @property
    def utterance_id(self) -> str:
        return f"{self.split}-{self.index:06d}"


def _plan_split(split: str, voices: tuple[Voice, ...], sentences: list[str], seed: int, rng: np.random.Generator, target_s: float, target_words: int) -> list[Job]:
    """Speech jobs until the estimated duration reaches `target_s` and the words reach `target_words`, then ~3 % empty ones."""
    by_synth = {s: [v for v in voices if v.synthesizer == s] for s in SYNTHESIZER_SHARES}
    synths = [s for s, vs in by_synth.items() if vs]
    shares = np.array([SYNTHESIZER_SHARES[s] for s in synths])
    order = rng.permutation(len(sentences))
    jobs: list[Job] = []
    estimated_s, words = 0.0, 0
    while not jobs or estimated_s < target_s or words < target_words:
        synth = synths[int(rng.choice(len(synths), p=shares / shares.sum()))]
        voice = by_synth[synth][int(rng.integers(len(by_synth[synth])))]
        text = sentences[int(order[len(jobs) % len(order)])]
        rate = float(np.exp(rng.uniform(*np.log(RATE_RANGE))))
        jobs.append(Job(split, len(jobs), seed, text, voice, rate, float(rng.uniform(*PITCH_RANGE))))
        estimated_s += len(text.split()) / WORDS_PER_S / rate + MARGINS_S
        words += len(text.split())
    n_empty = max(1, round(EMPTY_FRACTION * len(jobs)))
    return jobs + [Job(split, len(jobs) + i, seed, empty_s=float(rng.uniform(0.5, 4.0))) for i in range(n_empty)]


def _job_rng(job: Job) -> np.random.Generator:
    return np.random.default_rng([job.seed, SPLITS.index(job.split), job.index])


def _clean(job: Job) -> np.ndarray:
    return synthesize(job.voice, job.text, job.rate, job.pitch)


_BABBLE_BANKS: dict[str, list[np.ndarray]] = {}  # per worker process, set once by the pool initializer


def _lead_a_group() -> None:
    """Each worker leads a process group of its own, which its synthesizers join: a terminal's Ctrl-C
    reaches the build's parent alone (one message, not a traceback per worker), and killing the group
    stops the worker with whatever it was running. SIGTERM keeps its default action: a Python handler
    runs only between bytecodes, so a signal landing just before a blocking wait (an idle worker's
    read of the task queue) was never handled and left the pool's shutdown waiting forever."""
    os.setpgid(0, 0)


def _init_worker(banks: dict[str, list[np.ndarray]]) -> None:
    _lead_a_group()
    _BABBLE_BANKS.update(banks)


@contextlib.contextmanager
def synthesis_pool(workers: int, initializer: Callable[..., None] = _lead_a_group, initargs: tuple = ()) -> Iterator[Pool]:
    """A pool of group-leading workers that leaves nothing running behind it, however it is left
    (done, an error, Ctrl-C): its workers end and then their groups are killed, synthesizers and
    what they started included."""
    before = set(multiprocessing.active_children())
    pool = clean_context(__name__).Pool(workers, initializer=initializer, initargs=initargs)
    groups = [process.pid for process in multiprocessing.active_children() if process not in before]
    try:
        yield pool
    finally:
        pool.terminate()
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def _empty_segment(job: Job, rng: np.random.Generator) -> np.ndarray:
    """Near-digital silence, coloured noise or babble, at a random level and without words."""
    n_samples = round(job.empty_s * SAMPLE_RATE)
    kind = str(rng.choice(["silence", "white", "pink", "brown", "babble"]))
    if kind == "babble":
        noise = babble(n_samples, _BABBLE_BANKS[job.split], rng)
    else:
        noise = coloured_noise(n_samples, "white" if kind == "silence" else kind, rng)
    level_db = rng.uniform(-80.0, -60.0) if kind == "silence" else rng.uniform(-45.0, -15.0)
    return np.clip(noise * 10 ** (level_db / 20), -0.99, 0.99).astype(np.float32)


def _audio_path(job: Job) -> str:
    return str(Path("audio") / job.split / f"{job.utterance_id}.flac")


def _render(job_and_dir: tuple[Job, Path]) -> dict:
    """Synthesize (training audio also augmented), write the FLAC, return its manifest row."""
    job, out_dir = job_and_dir
    rng = _job_rng(job)
    if job.voice is None:
        samples = _empty_segment(job, rng)
    elif job.split == "train":
        recorded = job.voice.synthesizer in RECORDED_SYNTHESIZERS
        samples = augment(_clean(job), rng, _BABBLE_BANKS[job.split], recorded)
    else:
        samples = normalize_peak(_clean(job), rng.uniform(-12.0, -1.0))
    audio = _audio_path(job)
    sf.write(out_dir / audio, samples, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    voice = job.voice
    return {
        "audio": audio,
        "text": job.text,
        "speaker": voice.name if voice else "",
        "synthesizer": voice.synthesizer if voice else "",
        "accent": voice.accent if voice else "",
        "gender": voice.gender if voice else "",
        "duration_s": round(len(samples) / SAMPLE_RATE, 4),
        "family": voice.family if voice else "",
        "split": job.split,
    }


def summarize(rows: list[dict], seed: int | list[int], hours: float, built: tuple[str, ...]) -> dict:
    """summary.json: per built split its hours, utterances, words, families, synthesizers and voices
    (`seed` is a list for a merged corpus), and the licences of the voices used."""
    splits = {}
    for split in built:
        part = [r for r in rows if r["split"] == split]
        speakers = Counter(r["speaker"] for r in part if r["speaker"])
        splits[split] = {
            "hours": round(sum(r["duration_s"] for r in part) / 3600, 4),
            "utterances": len(part),
            "empty_utterances": sum(1 for r in part if not r["text"]),
            "words": sum(len(r["text"].split()) for r in part),
            "families": dict(sorted(Counter(r["family"] for r in part if r["family"]).items())),
            "synthesizers": dict(sorted(Counter(r["synthesizer"] for r in part if r["synthesizer"]).items())),
            "voices": sorted(speakers),
        }
    used = {r["speaker"]: r["synthesizer"] for r in rows if r["speaker"]}
    licences = {key: text for key, text in LICENCES.items() if key in used or key in used.values()}
    return {"seed": seed, "requested_train_hours": hours, "sample_rate": SAMPLE_RATE, "splits": splits, "licences": licences}


def build_corpus(out_dir: Path, hours: float, seed: int, workers: int = 2, test_words: int = 5500, dev_hours: float | None = None, progress: bool = True, splits: tuple[str, ...] = SPLITS) -> dict:
    """Write `out_dir/audio/<split>/<id>.flac`, `out_dir/<split>.jsonl` and `out_dir/summary.json`; return the summary.

    Train holds about `hours` of speech, test at least `test_words` words, dev `dev_hours` (default
    5 % of `hours`); held-out splits have their own voice families and sentences. Raises CorpusError
    before any synthesis if a synthesizer or voice is missing. Every split is planned and only
    `splits` rendered, so a larger test split (a bigger `test_words`) built alone for the same
    `seed` and `hours` starts with the default test split's utterances and shares no voice or
    sentence with that corpus's training split. A stopped build resumes when run again with the
    same settings (export/corpus/journal.py), rendering only what it had not.
    """
    if hours <= 0 or workers < 1 or test_words < 0:
        raise CorpusError(f"need hours > 0, workers >= 1, test_words >= 0 (got {hours}, {workers}, {test_words})")
    if not splits or set(splits) - set(SPLITS):
        raise CorpusError(f"splits must be some of {', '.join(SPLITS)} (got {', '.join(splits) or 'none'})")
    splits = tuple(split for split in SPLITS if split in splits)
    voices = voices_by_split()
    check_voices(sum(voices.values(), ()))
    sentences = split_sentences(load_sentences())
    rng = np.random.default_rng(seed)
    targets = {"train": (hours * 3600, 0), "dev": ((0.05 * hours if dev_hours is None else dev_hours) * 3600, 0), "test": (0.0, test_words)}
    plans = {split: _plan_split(split, voices[split], sentences[split], seed, rng, *targets[split]) for split in SPLITS}
    out_dir = Path(out_dir)
    settings = {"seed": seed, "hours": hours, "test_words": test_words, "dev_hours": dev_hours, "splits": list(splits)}
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir):
        rows = _render_all(out_dir, settings, splits, plans, workers, progress)
        for split in splits:
            with open(out_dir / f"{split}.jsonl", "w", encoding="utf-8") as manifest:
                for row in rows:
                    if row["split"] == split:
                        manifest.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary = summarize(rows, seed, hours, splits)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out_dir / JOURNAL_NAME).unlink()
        return summary


def _render_all(out_dir: Path, settings: dict, splits: tuple[str, ...], plans: dict[str, list[Job]], workers: int,
                progress: bool) -> list[dict]:
    """The manifest rows of the planned `splits`, rendering those the journal does not hold yet."""
    done = read_journal(out_dir, settings)
    for split in splits:
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
    bank_jobs = [(split, job) for split in splits for job in [j for j in plans[split] if j.voice][:BABBLE_BANK_SIZE]]
    with synthesis_pool(workers) as pool:
        bank_audio = pool.map(_clean, [job for _, job in bank_jobs])
    banks: dict[str, list[np.ndarray]] = {split: [] for split in splits}
    for (split, _), samples in zip(bank_jobs, bank_audio):
        banks[split].append(samples)
    order = [job for split in splits for job in plans[split]]
    todo = [(job, out_dir) for job in order if _audio_path(job) not in done]
    with open_journal(out_dir, settings, done) as journal, \
            synthesis_pool(workers, _init_worker, (banks,)) as pool:
        for row in tqdm(pool.imap(_render, todo, chunksize=4), total=len(order), initial=len(order) - len(todo),
                        unit="utt", disable=not progress):
            done[row["audio"]] = row
            append(journal, row)
    return [done[_audio_path(job)] for job in order]
