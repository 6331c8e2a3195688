"""Which voices does the model serve worst? Cohorts found without labels, against two baselines.

`framegate fairness cohorts [--model BUNDLE] [--embedder BUNDLE] --manifest JSONL --json OUT`:
every speech utterance of the manifest is transcribed (the shipped bundle by default, streamed
in 100 ms blocks as a live source delivers them) and embedded; a speaker's embedding is the
normalized mean of its utterances'. k-means (scikit-learn, cosine geometry: unit vectors)
clusters the speakers into cohorts, ranked worst first by WER (errors / reference words over
the cohort's utterances). Each speaker weighs in the k-means objective (and the silhouette) by
its utterance count, i.e. by the traffic it brings: otherwise a crowd of near-identical voices
with two utterances each (the corpus's espeak-ng variants) takes every centroid and the voices
that carry most of the speech share one cohort.

k rule: `--k N` fixes it; by default k maximizes the utterance-weighted silhouette score over
2..min(--max-k, speakers - 1) (ties: the larger k).

Figures, all recomputable from the per-utterance file (`per_utterance`) the report names:
- `wer_gap` = WER(bottom cohort) / WER(all) - 1; `bottom_share` = its share of the speakers.
- `metadata_partition`: the best binary split of the speakers by one labelled attribute
  (accent, synthesizer or gender): the two sides are value sets (all subsets when an attribute
  has <= 12 values, otherwise the decision-tree ordering: values sorted by WER, split at each
  prefix), the split maximizing WER(worse side) - WER(other side) among those whose worse side
  holds a share of speakers within 5 points of the cohorts' `bottom_share` (`matched`; when none
  does, the nearest share).
- `shuffled_control`: the same k-means on the embeddings shuffled across speakers, each speaker
  keeping its own weight (what chance alone finds), `repeats` times; the mean over the repeats whose bottom share is matched.
The speakers' embeddings are written too (`_speakers.jsonl`), for the control and the plot.
"""
from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from framegate.benchmarks.report import machine_info, wer_interval, word_errors, write_report
from framegate.engine.audio import read_audio
from framegate.engine.speaker_embedding import SpeakerEmbedder, speaker_embedding
from framegate.export.corpus.manifest import speech_rows

SCHEMA = "framegate.fairness.cohorts/1"
ATTRIBUTES = ("accent", "synthesizer", "gender")
SHARE_TOLERANCE = 0.05
EXHAUSTIVE_MAX_VALUES = 12
COHORT_KEYS = ("id", "wer", "speakers", "n_speakers", "n_utterances")
K_RULE = ("argmax utterance-weighted silhouette over k = 2..min(max_k, speakers - 1), ties to the larger k; "
          "k-means weighted by utterances per speaker")


@dataclass(frozen=True)
class Cohorts:
    """Speakers (sorted) with their embeddings and utterance counts (k-means weights), the k-means
    labels and centroids, k and how it was chosen."""

    speakers: list[str]
    embeddings: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    centroids: np.ndarray
    k: int
    silhouettes: dict[int, float]


# -- measuring ------------------------------------------------------------------------
def transcribe_rows(rows: list[dict], model: Path | None, threads: int = 1) -> list[str]:
    """Hypotheses of every row's audio through a real stream of `model` (None: the shipped bundle)."""
    from framegate.benchmarks.wer import transcribe_blocks
    from framegate.engine.recognizer import Recognizer

    recognizer = Recognizer(model, num_threads=threads)
    hyps = []
    for row in tqdm(rows, desc=f"transcribing ({Path(recognizer.bundle.path).name})", unit="utt"):
        samples, rate = read_audio(row["audio"])
        hyps.append(transcribe_blocks(recognizer, samples, rate)[0])
    return hyps


def embed_rows(rows: list[dict], embedder: SpeakerEmbedder) -> np.ndarray:
    return np.stack([embedder.embed_file(row["audio"]) for row in tqdm(rows, desc="embedding", unit="utt")])


def per_speaker(rows: list[dict], utterance_embeddings: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted speakers, their embeddings (normalized mean of their utterances') and utterance counts."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row["speaker"]].append(i)
    speakers = sorted(groups)
    return (speakers, np.stack([speaker_embedding(utterance_embeddings[groups[s]]) for s in speakers]),
            np.array([len(groups[s]) for s in speakers], dtype=float))


def per_utterance_results(rows: list[dict], hyps: list[str]) -> list[dict]:
    errors, words = word_errors([r["text"] for r in rows], hyps)
    return [{"audio": r["audio"], "speaker": r["speaker"], **{a: r[a] for a in ATTRIBUTES}, "ref": r["text"],
             "hyp": h, "errors": int(e), "words": int(w)} for r, h, e, w in zip(rows, hyps, errors, words)]


# -- clustering -----------------------------------------------------------------------
def _kmeans(embeddings: np.ndarray, weights: np.ndarray, k: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(embeddings, sample_weight=weights)


def weighted_silhouette(embeddings: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> float:
    """The silhouette score of the points repeated `weights` times (integer weights), computed on
    the distinct points: a speaker's copies are at distance 0 from each other."""
    distance = np.sqrt(np.maximum(((embeddings[:, None, :] - embeddings[None]) ** 2).sum(-1), 0.0))
    clusters = np.unique(labels)
    mean_to = np.stack([(distance[:, labels == c] * weights[labels == c]).sum(1) for c in clusters], 1)
    mass = np.array([weights[labels == c].sum() for c in clusters])
    own = np.searchsorted(clusters, labels)
    rows = np.arange(len(labels))
    inside = mass[own] - 1.0
    a = np.divide(mean_to[rows, own], inside, out=np.zeros(len(labels)), where=inside > 0)
    others = mean_to / mass
    others[rows, own] = np.inf
    b = others.min(1)
    s = np.where(inside > 0, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float((s * weights).sum() / weights.sum())


def discover(speakers: list[str], embeddings: np.ndarray, weights: np.ndarray, k: int | None, max_k: int,
             seed: int) -> Cohorts:
    """Utterance-weighted k-means cohorts of the speaker embeddings, k fixed or by the silhouette rule (K_RULE)."""
    n = len(speakers)
    if n < 3:
        raise ValueError(f"cohort discovery needs at least 3 speakers, the manifest has {n}")
    silhouettes: dict[int, float] = {}
    if k is None:
        for candidate in range(2, min(max_k, n - 1) + 1):
            fit = _kmeans(embeddings, weights, candidate, seed)
            if len(set(fit.labels_)) > 1:
                silhouettes[candidate] = weighted_silhouette(embeddings, weights, fit.labels_)
        if not silhouettes:
            raise ValueError("every speaker embedding is identical: no cohorts to find")
        k = max(silhouettes, key=lambda c: (round(silhouettes[c], 12), c))
    elif not 2 <= k <= n:
        raise ValueError(f"k = {k} must be in 2..{n} (the number of speakers)")
    fit = _kmeans(embeddings, weights, k, seed)
    return Cohorts(speakers, embeddings, weights, fit.labels_.copy(), fit.cluster_centers_.copy(), k, silhouettes)


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest centroid (Euclidean, as k-means) of each embedding row."""
    return np.argmin(((embeddings[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)


# -- the figures ----------------------------------------------------------------------
def _wer(per_utt: list[dict], idx) -> float:
    errors = sum(per_utt[i]["errors"] for i in idx)
    return errors / max(sum(per_utt[i]["words"] for i in idx), 1)


def relative_gap(bottom_wer: float, overall_wer: float) -> float:
    return bottom_wer / overall_wer - 1.0 if overall_wer > 0 else 0.0


def rank_cohorts(per_utt: list[dict], cohort_of: dict[str, int]) -> list[dict]:
    """Cohorts worst first: id (rank, 0 = worst), wer, speakers, counts, and the k-means label."""
    utts: dict[int, list[int]] = defaultdict(list)
    for i, u in enumerate(per_utt):
        utts[cohort_of[u["speaker"]]].append(i)
    table = [{"label": int(label), "wer": _wer(per_utt, idx),
              "speakers": sorted({per_utt[i]["speaker"] for i in idx}), "n_utterances": len(idx)}
             for label, idx in utts.items()]
    table.sort(key=lambda c: (-c["wer"], c["label"]))
    return [{"id": rank, "wer": c["wer"], "speakers": c["speakers"], "n_speakers": len(c["speakers"]),
             "n_utterances": c["n_utterances"], "kmeans_label": c["label"]} for rank, c in enumerate(table)]


def _bottom(table: list[dict], n_speakers: int, overall: float) -> tuple[float, float]:
    return relative_gap(table[0]["wer"], overall), table[0]["n_speakers"] / n_speakers


def metadata_partition(per_utt: list[dict], target_share: float, attributes=ATTRIBUTES,
                       tolerance: float = SHARE_TOLERANCE) -> dict:
    """The best binary split of the speakers by one attribute (module docstring), worse side first."""
    overall = _wer(per_utt, range(len(per_utt)))
    n_speakers = len({u["speaker"] for u in per_utt})
    best, best_key = None, None
    for attribute in attributes:
        value_of = {u["speaker"]: u[attribute] for u in per_utt}
        errors: dict[str, int] = defaultdict(int)
        words: dict[str, int] = defaultdict(int)
        for u in per_utt:
            errors[value_of[u["speaker"]]] += u["errors"]
            words[value_of[u["speaker"]]] += u["words"]
        voices: dict[str, int] = defaultdict(int)
        for value in value_of.values():
            voices[value] += 1
        values = sorted(voices, key=lambda v: (-errors[v] / max(words[v], 1), v))
        if len(values) < 2:
            continue
        if len(values) <= EXHAUSTIVE_MAX_VALUES:
            candidates = [c for r in range(1, len(values)) for c in itertools.combinations(values, r)]
        else:
            candidates = [tuple(values[:r]) for r in range(1, len(values))]
        total_errors, total_words = sum(errors.values()), sum(words.values())
        for side in candidates:
            side_errors, side_words = sum(errors[v] for v in side), sum(words[v] for v in side)
            inside = side_errors / max(side_words, 1)
            outside = (total_errors - side_errors) / max(total_words - side_words, 1)
            if inside < outside:
                continue  # every split is also counted from its worse side
            share = sum(voices[v] for v in side) / n_speakers
            matched = abs(share - target_share) <= tolerance + 1e-12
            key = (matched, 0.0 if matched else -round(abs(share - target_share), 9), inside - outside)
            if best_key is None or key > best_key:
                best_key = key
                best = {"attribute": attribute, "values": sorted(side), "wer_gap": relative_gap(inside, overall),
                        "bottom_share": share, "wer_difference": inside - outside, "matched": matched}
    if best is None:
        return {"attribute": None, "values": [], "wer_gap": 0.0, "bottom_share": 0.0, "wer_difference": 0.0,
                "matched": False}
    return best


def shuffled_control(per_utt: list[dict], cohorts: Cohorts, target_share: float, repeats: int, seed: int,
                     tolerance: float = SHARE_TOLERANCE) -> dict:
    """k-means with the same k on embeddings shuffled across speakers (weights stay with the
    speakers); mean of the matched repeats."""
    overall = _wer(per_utt, range(len(per_utt)))
    rng = np.random.default_rng(seed)
    gaps, shares = [], []
    for r in range(repeats):
        shuffled = cohorts.embeddings[rng.permutation(len(cohorts.speakers))]
        labels = _kmeans(shuffled, cohorts.weights, cohorts.k, seed + 1 + r).labels_
        table = rank_cohorts(per_utt, dict(zip(cohorts.speakers, labels.tolist())))
        gap, share = _bottom(table, len(cohorts.speakers), overall)
        gaps.append(gap)
        shares.append(share)
    gaps_a, shares_a = np.array(gaps), np.array(shares)
    matched = np.abs(shares_a - target_share) <= tolerance + 1e-12
    use = matched if matched.any() else np.ones_like(matched)
    return {"wer_gap": float(gaps_a[use].mean()), "bottom_share": float(shares_a[use].mean()),
            "wer_gap_p95": float(np.percentile(gaps_a[use], 95)), "repeats": repeats,
            "matched_repeats": int(matched.sum()), "matched": bool(matched.any())}


# -- the command ----------------------------------------------------------------------
def run(model: Path | None, embedder: Path | None, manifest: Path, out: Path, k: int | None = None,
        max_k: int = 10, seed: int = 0, repeats: int = 100, threads: int = 1) -> dict:
    out = Path(out)
    manifest_rows = speech_rows(manifest)
    rows = manifest_rows.rows
    emb_model = SpeakerEmbedder(embedder, num_threads=threads)
    utterance_embeddings = embed_rows(rows, emb_model)
    per_utt = per_utterance_results(rows, transcribe_rows(rows, model, threads))
    speakers, speaker_emb, speaker_weights = per_speaker(rows, utterance_embeddings)
    cohorts = discover(speakers, speaker_emb, speaker_weights, k, max_k, seed)
    cohort_of = dict(zip(speakers, cohorts.labels.tolist()))
    table = rank_cohorts(per_utt, cohort_of)
    rank_of_label = {c["kmeans_label"]: c["id"] for c in table}
    for u in per_utt:
        u["cohort"] = rank_of_label[cohort_of[u["speaker"]]]
    errors = np.array([u["errors"] for u in per_utt], dtype=float)
    words = np.array([u["words"] for u in per_utt], dtype=float)
    overall, lo, hi = wer_interval(errors, words)
    gap, share = _bottom(table, len(speakers), overall)
    metadata = metadata_partition(per_utt, share)
    control = shuffled_control(per_utt, cohorts, share, repeats, seed)

    per_utt_path = out.with_name(out.stem + "_utterances.jsonl")
    speakers_path = out.with_name(out.stem + "_speakers.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    per_utt_path.write_text("".join(json.dumps(u, ensure_ascii=False) + "\n" for u in per_utt), encoding="utf-8")
    speakers_path.write_text("".join(
        json.dumps({"speaker": s, "cohort": rank_of_label[cohort_of[s]], "embedding": e.round(6).tolist()}) + "\n"
        for s, e in zip(speakers, speaker_emb)), encoding="utf-8")
    report = {
        "schema": SCHEMA, "speech": "synthetic",
        "cohorts": [{key: c[key] for key in COHORT_KEYS} for c in table], "wer_gap": gap, "bottom_share": share,
        "metadata_partition": metadata, "shuffled_control": control,
        "per_utterance": str(per_utt_path),
        "speakers_file": str(speakers_path),
        "wer": overall, "ci95": [lo, hi], "n_speakers": len(speakers), "n_utterances": len(per_utt),
        "skipped_non_speech": manifest_rows.skipped_non_speech,
        "k": cohorts.k, "k_rule": f"--k {k}" if k is not None else K_RULE,
        "silhouettes": {str(c): s for c, s in cohorts.silhouettes.items()},
        "share_tolerance": SHARE_TOLERANCE, "seed": seed,
        "finding": {"beats_metadata_at_matched_share": bool(metadata["matched"] and gap > metadata["wer_gap"]),
                    "beats_shuffled_control_at_matched_share": bool(control["matched"] and gap > control["wer_gap"])},
        "model": str(model) if model else "(shipped bundle)", "embedder": str(emb_model.path),
        "manifest": str(manifest), "machine": machine_info(),
    }
    write_report(out, report, _figure(report, speaker_emb, [rank_of_label[cohort_of[s]] for s in speakers]))
    return report


def _figure(report: dict, speaker_emb: np.ndarray, speaker_cohort: list[int]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    xy = PCA(n_components=2, random_state=0).fit_transform(speaker_emb)
    wer_of = {c["id"]: 100 * c["wer"] for c in report["cohorts"]}
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    points = ax.scatter(xy[:, 0], xy[:, 1], c=[wer_of[c] for c in speaker_cohort], cmap="magma_r", s=28,
                        edgecolors="k", linewidths=0.3)
    for c in report["cohorts"]:
        members = [i for i, s in enumerate(speaker_cohort) if s == c["id"]]
        ax.annotate(f"#{c['id']}", xy[members].mean(0), fontsize=9, weight="bold", color="#1f77b4")
    fig.colorbar(points, ax=ax, label="cohort WER % (synthetic speech)")
    ax.set_title(f"Speaker embeddings (PCA), {report['k']} cohorts; #0 is the worst")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    md, ctl = report["metadata_partition"], report["shuffled_control"]
    names = ["cohorts (k-means)", f"metadata ({md['attribute']})", "shuffled control"]
    gaps = [100 * report["wer_gap"], 100 * md["wer_gap"], 100 * ctl["wer_gap"]]
    shares = [report["bottom_share"], md["bottom_share"], ctl["bottom_share"]]
    bars.bar(names, gaps, color=["#c44e52", "#4c72b0", "#8c8c8c"])
    for i, (g, s) in enumerate(zip(gaps, shares)):
        bars.annotate(f"{100 * s:.0f} % of speakers", (i, g), ha="center", va="bottom", fontsize=8)
    bars.set_ylabel("WER gap % (bottom group vs all)")
    bars.set_title(f"Bottom group's WER gap (overall WER {100 * report['wer']:.1f} %)")
    plt.setp(bars.get_xticklabels(), rotation=15, ha="right")
    fig.tight_layout()
    return fig
