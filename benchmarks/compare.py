"""Two runs of one benchmark on the same audio, paired utterance by utterance.

Why: a model is recommitted only when it measurably improves, and two summary figures
side by side are not a measurement of their difference. Pairing each utterance with itself
and bootstrapping over utterances gives the interval a shipping decision needs: WER reports
(`bench wer`) pair errors per utterance; latency reports (`bench latency`) pair each
utterance's last-word and endpoint latency, for greedy search and for the bundle's own search.
Differences are B - A: negative means B is better.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from framegate.benchmarks.report import bootstrap_interval, machine_info, paired_wer_difference, write_report
from framegate.engine.errors import FramegateError

SCHEMA = "framegate.bench.compare/1"
SEARCHES = {"greedy": ("virtual",), "bundle_search": ("bundle_search", "virtual")}
LATENCIES = ("last_word_ms", "endpoint_ms")
TIE_MS = 1.0  # a difference within this is the same block's arrival, not a change


def _load(report_path: Path) -> tuple[dict, str, list[dict]]:
    """The report, its kind ("wer" or "latency") and its per-utterance records."""
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FramegateError(f"cannot read benchmark report {report_path}: {e}") from None
    schema = str(report.get("schema", ""))
    kind = {"framegate.bench.wer": "wer", "framegate.bench.latency": "latency"}.get(schema.split("/")[0])
    if kind is None:
        raise FramegateError(f"{report_path}: schema {schema!r} is not a 'bench wer' or 'bench latency' report")
    per_utt = Path(report.get("per_utterance", ""))
    if not per_utt.is_absolute() and not per_utt.exists():
        per_utt = Path(report_path).parent / per_utt.name
    try:
        records = [json.loads(line) for line in per_utt.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise FramegateError(f"{report_path}: cannot read its per-utterance file {per_utt}: {e}") from None
    _check_records_are_the_reports(report_path, report, kind, records, per_utt)
    return report, kind, records


def _check_records_are_the_reports(report_path: Path, report: dict, kind: str, records: list[dict],
                                   per_utt: Path) -> None:
    """A per-utterance file that a later run overwrote (a report renamed away from its records) would
    pair the later run with itself: its count, and for WER its total, must be the report's own."""
    stale = "utterances" in report and report["utterances"] != len(records)
    if kind == "wer" and "wer" in report and records:
        words = sum(r["words"] for r in records)
        stale |= abs(sum(r["errors"] for r in records) / max(words, 1) - report["wer"]) > 1e-9
    if stale:
        raise FramegateError(f"{report_path}: its per-utterance file {per_utt} holds another run's utterances "
                             f"(overwritten since?); point the report's per_utterance at its own records")


def _paired(a: list[dict], b: list[dict], key: str, ref_key: str) -> list[tuple[dict, dict]]:
    """Records of the same utterance in both runs, in A's order; references must agree."""
    by_id = {r[key]: r for r in b}
    pairs = [(r, by_id[r[key]]) for r in a if r[key] in by_id]
    if not pairs:
        raise FramegateError("the two reports share no utterance: compare runs on the same audio")
    for ra, rb in pairs:
        if ra.get(ref_key) != rb.get(ref_key):
            raise FramegateError(f"utterance {ra[key]} has different references in the two reports")
    return pairs


def compare_wer(a: list[dict], b: list[dict], rounds: int = 2000, seed: int = 0) -> dict:
    pairs = _paired(a, b, "audio", "ref")
    errors_a = np.array([ra["errors"] for ra, _ in pairs], dtype=float)
    errors_b = np.array([rb["errors"] for _, rb in pairs], dtype=float)
    words = np.array([ra["words"] for ra, _ in pairs], dtype=float)
    families: dict[str, list[int]] = defaultdict(list)
    for i, (ra, _) in enumerate(pairs):
        families[ra.get("family", "")].append(i)
    total = max(words.sum(), 1.0)
    return {"utterances": len(pairs), "words": int(words.sum()),
            "wer": {"a": errors_a.sum() / total, "b": errors_b.sum() / total},
            "difference": paired_wer_difference(errors_b, errors_a, words, seed=seed, rounds=rounds),
            "utterances_better_same_worse": [int((errors_b < errors_a).sum()), int((errors_b == errors_a).sum()),
                                             int((errors_b > errors_a).sum())],
            "per_family": {f: {"words": int(words[i].sum()),
                               "a": float(errors_a[i].sum() / max(words[i].sum(), 1)),
                               "b": float(errors_b[i].sum() / max(words[i].sum(), 1))}
                           for f, i in sorted(families.items())}}


def _latency_ms(record: dict, path: tuple[str, ...], field: str) -> float | None:
    run = record
    for key in path:
        run = (run or {}).get(key)
    if not run or run.get(field) is None:
        return None
    return 1000 * (run[field] - record["speech_end_s"])


def compare_latency(a: list[dict], b: list[dict], rounds: int = 2000, seed: int = 0) -> dict:
    pairs = _paired(a, b, "id", "reference")
    out: dict = {"utterances": len(pairs)}
    for search, path in SEARCHES.items():
        figures = {}
        for name in LATENCIES:
            field = name.removesuffix("_ms") + "_s"
            both = [(_latency_ms(ra, path, field), _latency_ms(rb, path, field)) for ra, rb in pairs]
            both = [(x, y) for x, y in both if x is not None and y is not None]
            if not both:
                continue
            xa, xb = (np.array(v) for v in zip(*both))
            diff = xb - xa
            stacked = np.stack([xa, xb], axis=1)
            figures[name] = {
                "utterances": len(both),
                "a": {"p50": float(np.percentile(xa, 50)), "p95": float(np.percentile(xa, 95))},
                "b": {"p50": float(np.percentile(xb, 50)), "p95": float(np.percentile(xb, 95))},
                "p95_difference": {
                    "difference": float(np.percentile(xb, 95) - np.percentile(xa, 95)),
                    "ci95": bootstrap_interval(stacked,
                                               lambda s: np.percentile(s[:, 1], 95) - np.percentile(s[:, 0], 95),
                                               rounds, seed)},
                "mean_difference": {"difference": float(diff.mean()),
                                    "ci95": bootstrap_interval(diff, np.mean, rounds, seed)},
                "earlier_same_later": [int((diff < -TIE_MS).sum()), int((abs(diff) <= TIE_MS).sum()),
                                       int((diff > TIE_MS).sum())],
                "per_utterance": {"a": xa.tolist(), "b": xb.tolist()},
            }
        if figures:
            out[search] = figures
    return out


def run(report_a: Path, report_b: Path, out: Path, rounds: int = 2000, seed: int = 0) -> dict:
    rep_a, kind_a, rec_a = _load(report_a)
    rep_b, kind_b, rec_b = _load(report_b)
    if kind_a != kind_b:
        raise FramegateError(f"cannot pair a '{kind_a}' report with a '{kind_b}' report")
    paired = (compare_wer if kind_a == "wer" else compare_latency)(rec_a, rec_b, rounds=rounds, seed=seed)
    report = {"schema": SCHEMA, "kind": kind_a, "difference": "B - A",
              "a": {"report": str(report_a), "model": rep_a.get("model")},
              "b": {"report": str(report_b), "model": rep_b.get("model")},
              **paired, "bootstrap_rounds": rounds, "machine": machine_info()}
    write_report(out, report, _figure(report))
    return report


def _figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report["kind"] == "wer":
        fams = report["per_family"]
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(fams)), 4))
        x = np.arange(len(fams))
        ax.bar(x - 0.2, [100 * f["a"] for f in fams.values()], 0.4, label="A")
        ax.bar(x + 0.2, [100 * f["b"] for f in fams.values()], 0.4, label="B")
        ax.set_xticks(x, list(fams), rotation=45, ha="right")
        d = report["difference"]
        ax.set_ylabel("WER %")
        ax.set_title(f"B - A: {100 * d['difference']:+.2f} points (95 % CI {100 * d['ci95'][0]:+.2f} to "
                     f"{100 * d['ci95'][1]:+.2f}), {report['words']} words")
        ax.legend()
        return fig
    searches = [s for s in SEARCHES if s in report]
    fig, axes = plt.subplots(1, max(len(searches), 1), figsize=(5.5 * max(len(searches), 1), 4.5), squeeze=False)
    for ax, search in zip(axes[0], searches):
        fig_data = report[search]["last_word_ms"]
        a, b = np.array(fig_data["per_utterance"]["a"]), np.array(fig_data["per_utterance"]["b"])
        ax.scatter(a, b, s=8, alpha=0.6)
        hi = max(a.max(), b.max(), 1.0)
        ax.plot([min(a.min(), b.min(), 0), hi], [min(a.min(), b.min(), 0), hi], color="gray", lw=0.8)
        d = fig_data["p95_difference"]
        ax.set_xlabel("A last word (ms after speech end)")
        ax.set_ylabel("B last word (ms)")
        ax.set_title(f"{search}: p95 {fig_data['a']['p95']:.0f} -> {fig_data['b']['p95']:.0f} ms "
                     f"(CI of B - A {d['ci95'][0]:+.0f} to {d['ci95'][1]:+.0f})", fontsize=9)
    return fig
