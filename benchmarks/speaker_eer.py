"""How well do speaker embeddings tell held-out voices apart, and how evenly across accents?

`framegate fairness eer --embedder [NAME=]BUNDLE ... --manifest JSONL --json OUT`: every speech
utterance of the manifest (held-out voices: the test split) is embedded by each bundle on the
device path (ONNX Runtime); trials are all pairs of utterances, scored by cosine similarity,
target = same voice. Reported per embedder: the equal-error rate over all trials, per accent
group (trials with both utterances in the group; a group needs both kinds of trial), and the
gap between the best and the worst group. With two or more embedders, each later one is
compared with the first (e.g. adversarial reweighting against the same recipe without it):
differences in overall EER and in the accent gap.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from framegate.benchmarks.fairness_cohorts import embed_rows
from framegate.benchmarks.report import machine_info, write_report
from framegate.engine.errors import FramegateError
from framegate.engine.speaker_embedding import SpeakerEmbedder
from framegate.export.corpus.manifest import speech_rows
from framegate.export.speaker_verification import equal_error_rate, trial_scores

SCHEMA = "framegate.fairness.eer/1"
GROUP_KEY = "accent"


def parse_named(specs: list[str]) -> dict[str, Path]:
    """`NAME=PATH` or `PATH` (named after the bundle directory, or its parent when it is called bundle)."""
    named: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            p = Path(spec)
            name = p.parent.name if p.name == "bundle" else p.name
        if name in named:
            raise FramegateError(f"embedder name {name!r} is given twice; name them NAME=PATH")
        named[name] = Path(path)
    return named


def verification_figures(embeddings: np.ndarray, speakers: list[str], groups: list[str]) -> dict:
    """EER overall and per group, the best-worst gap, and trial counts."""
    scores, target = trial_scores(embeddings, speakers)
    i, j = np.triu_indices(len(speakers), k=1)
    group = np.asarray(groups)
    per_group = {}
    for g in sorted(set(groups)):
        inside = (group[i] == g) & (group[j] == g)
        n_target, n_non = int(target[inside].sum()), int((~target[inside]).sum())
        entry = {"speakers": len({s for s, gg in zip(speakers, groups) if gg == g}),
                 "target_trials": n_target, "nontarget_trials": n_non}
        if n_target and n_non:
            entry["eer"] = equal_error_rate(scores[inside], target[inside])
        per_group[g] = entry
    rated = {g: e["eer"] for g, e in per_group.items() if "eer" in e}
    if len(rated) < 2:  # a gap needs two groups with an EER
        best = worst = gap = None
    else:
        best, worst = min(rated, key=rated.get), max(rated, key=rated.get)
        gap = rated[worst] - rated[best]
    return {"eer": equal_error_rate(scores, target), "target_trials": int(target.sum()),
            "nontarget_trials": int((~target).sum()), "per_group": per_group, "accent_gap": gap,
            "best_group": best, "worst_group": worst}


def _compare(result: dict, reference: dict) -> dict:
    """Differences from the reference embedder (None where a gap is undefined)."""
    gap, ref_gap = result["accent_gap"], reference["accent_gap"]
    has_gaps = gap is not None and ref_gap is not None
    return {"eer_difference": result["eer"] - reference["eer"],
            "accent_gap_difference": gap - ref_gap if has_gaps else None,
            "accent_gap_relative_change": gap / ref_gap - 1 if has_gaps and ref_gap > 0 else None,
            "gap_lowered": gap < ref_gap if has_gaps else None}


def run(embedders: dict[str, Path], manifest: Path, out: Path, threads: int = 1) -> dict:
    rows = speech_rows(manifest).rows
    speakers = [r["speaker"] for r in rows]
    groups = [r[GROUP_KEY] or "(none)" for r in rows]
    results = {}
    for name, path in embedders.items():
        embedder = SpeakerEmbedder(path, num_threads=threads)
        results[name] = {"bundle": str(embedder.path), "model_card": embedder.model_card,
                         **verification_figures(embed_rows(rows, embedder), speakers, groups)}
    names = list(results)
    reference = results[names[0]]
    comparisons = {name: _compare(results[name], reference) | {"against": names[0]} for name in names[1:]}
    voices = defaultdict(set)
    for s, g in zip(speakers, groups):
        voices[g].add(s)
    report = {"schema": SCHEMA, "speech": "synthetic", "manifest": str(manifest), "group_key": GROUP_KEY,
              "utterances": len(rows), "speakers": len(set(speakers)),
              "groups": {g: len(v) for g, v in sorted(voices.items())},
              "embedders": results, "comparisons": comparisons, "machine": machine_info()}
    write_report(out, report, _figure(report))
    return report


def _figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["embedders"])
    groups = ["(all)"] + list(report["groups"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * len(names) / 2 + 3), 4))
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        r = report["embedders"][name]
        values = [100 * r["eer"]] + [100 * r["per_group"][g].get("eer", np.nan) for g in groups[1:]]
        ax.bar(np.arange(len(groups)) + n * width, values, width,
               label=name if r["accent_gap"] is None else f"{name} (accent gap {100 * r['accent_gap']:.1f} points)")
    ax.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2, groups)
    ax.set_ylabel("equal-error rate % (synthetic voices)")
    ax.set_title("Speaker verification on held-out voices, overall and per accent group")
    ax.legend()
    return fig
