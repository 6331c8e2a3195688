"""Merge corpus builds into one training corpus without re-synthesizing anything.

More training audio comes from another seed's build of the train split alone (`corpus build
--splits train --seed 2`); merging it with a full build gives one corpus directory to train on.
The held-out splits (dev, test) come from the first corpus only, so evaluations stay the ones
every earlier model was measured on. A train row that shares a voice family or a sentence with
those held-out splits is refused, since it would leak them into training.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from framegate.export.corpus import CorpusError
from framegate.export.corpus.build import summarize
from framegate.export.feature_cache import read_manifest

HELD_OUT = ("dev", "test")


def _split_rows(source: Path, split: str, out_dir: Path) -> list[dict]:
    """`source`'s manifest of `split`, each row with `audio` relative to `out_dir` (absolute paths
    stay as they are) and `split` set."""
    manifest = source / f"{split}.jsonl"
    if not manifest.is_file():
        raise CorpusError(f"corpus merge: {manifest} does not exist")
    rows = []
    for row in read_manifest(manifest):
        audio = Path(row["audio"])
        if not audio.is_absolute():
            audio = Path(os.path.relpath((source / audio).resolve(), out_dir.resolve()))
        rows.append({**row, "audio": str(audio), "split": split})
    return rows


def _check_no_leak(train: list[dict], held_out: list[dict]) -> None:
    families = {r["family"] for r in held_out if r.get("family")}
    sentences = {r["text"] for r in held_out if r["text"]}
    for row in train:
        if row.get("family") in families:
            raise CorpusError(f"corpus merge: training utterance {row['audio']} is spoken by held-out voice family "
                              f"{row['family']!r}; the corpora were built with different voice splits")
        if row["text"] in sentences:
            raise CorpusError(f"corpus merge: training utterance {row['audio']} says a held-out sentence "
                              f"({row['text']!r}); the corpora were built with different sentence splits")


def merge_corpora(sources: list[Path], out_dir: Path) -> dict:
    """Write `out_dir/{train,dev,test}.jsonl` and `summary.json` from `sources`; return the summary.

    Train is every source's train split in order; dev and test are the first source's. Audio
    stays where it is: manifests point at it by paths relative to `out_dir`.
    """
    if len(sources) < 2:
        raise CorpusError("corpus merge needs at least two corpora")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for source in sources:
        summary_path = Path(source) / "summary.json"
        if not summary_path.is_file():
            raise CorpusError(f"corpus merge: {source} has no summary.json (not a corpus build)")
        summaries.append(json.loads(summary_path.read_text(encoding="utf-8")))
    rates = {s["sample_rate"] for s in summaries}
    if len(rates) != 1:
        raise CorpusError(f"corpus merge: the corpora have different sample rates {sorted(rates)}")
    splits = {split: _split_rows(Path(sources[0]), split, out_dir) for split in HELD_OUT}
    splits["train"] = [row for source in sources for row in _split_rows(Path(source), "train", out_dir)]
    _check_no_leak(splits["train"], splits["dev"] + splits["test"])
    for split, rows in splits.items():
        with open(out_dir / f"{split}.jsonl", "w", encoding="utf-8") as manifest:
            for row in rows:
                manifest.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = [row for split_rows in splits.values() for row in split_rows]
    summary = summarize(rows, [s["seed"] for s in summaries],
                        sum(s["requested_train_hours"] for s in summaries), ("train", *HELD_OUT))
    summary["sources"] = [str(source) for source in sources]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
