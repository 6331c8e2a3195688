"""Does elastic weight consolidation help the worst cohort without hurting the others?

`framegate fairness ewc --config FINETUNE_RECIPE --embedder EMB --lambdas L1 L2 ... --work DIR --json OUT`
runs the whole protocol, so nothing leaks between the voices that choose, train and judge:

1. Cohorts are discovered on the dev voices with the base model (the recipe's `init_from`,
   exported to DIR/base_bundle): k-means of speaker embeddings, ranked by dev WER
   (benchmarks/fairness_cohorts.py, same k rule).
2. Fine-tuning data: the training voices whose embedding is nearest (as k-means assigns) to one
   of the `--worst` worst cohorts' centroids, all their utterances; if fewer than
   `--min-speakers` voices qualify, the training voices nearest to those centroids are added
   until there are that many. Written to DIR/finetune.jsonl.
3. Fine-tuning: `framegate train --config RECIPE --finetune-on DIR/finetune.jsonl --ewc-lambda L`
   for L = 0 (plain) and every --lambdas value, each in DIR/lambda_L (resumes if interrupted;
   the Fisher is computed once and copied to the other EWC runs).
4. Evaluation on the test voices, each assigned to the nearest dev centroid: WER per cohort, the
   mean, maximum and variance across cohorts (those with test voices) and overall, for no
   fine-tuning, plain and every EWC lambda, with paired-bootstrap 95 % intervals of each
   system's difference from no fine-tuning on the worst cohorts, the other cohorts, and overall.
`checks` evaluates the issue's criteria for every EWC run.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from framegate.benchmarks.fairness_cohorts import (assign, discover, embed_rows, per_speaker, per_utterance_results,
                                                   rank_cohorts, transcribe_rows)
from framegate.benchmarks.report import machine_info, paired_wer_difference, wer_interval, write_report
from framegate.engine.speaker_embedding import SpeakerEmbedder
from framegate.export.corpus.manifest import speech_rows

SCHEMA = "framegate.fairness.ewc/1"
MIN_RELATIVE_GAIN = 0.03


def _sample_per_speaker(rows: list[dict], cap: int, seed: int) -> list[dict]:
    """At most `cap` utterances per voice (seeded): enough to place a voice, far cheaper on train."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault(r["speaker"], []).append(i)
    keep = sorted(i for idx in by.values() for i in (rng.choice(idx, cap, replace=False) if len(idx) > cap else idx))
    return [rows[i] for i in keep]


def finetune_voices(train_speakers: list[str], train_emb: np.ndarray, centroids: np.ndarray, worst: list[int],
                    min_speakers: int) -> list[str]:
    """Training voices assigned to a worst centroid, topped up with the nearest ones (module docstring)."""
    nearest = assign(train_emb, centroids)
    chosen = [s for s, c in zip(train_speakers, nearest) if c in worst]
    if len(chosen) < min_speakers:
        distance = np.min(((train_emb[:, None, :] - centroids[worst][None]) ** 2).sum(-1), axis=1)
        for i in np.argsort(distance, kind="stable"):
            if len(chosen) >= min_speakers:
                break
            if train_speakers[i] not in chosen:
                chosen.append(train_speakers[i])
    return sorted(chosen)


def system_figures(per_utt: list[dict], cohort_ids: list[int]) -> dict:
    """WER per cohort id (test utterances' `cohort`), mean/max/variance over cohorts with test voices, overall."""
    per_cohort = {}
    for c in cohort_ids:
        idx = [i for i, u in enumerate(per_utt) if u["cohort"] == c]
        words = sum(per_utt[i]["words"] for i in idx)
        per_cohort[str(c)] = {"wer": sum(per_utt[i]["errors"] for i in idx) / words if words else None,
                              "n_utterances": len(idx), "words": words,
                              "n_speakers": len({per_utt[i]["speaker"] for i in idx})}
    rated = [v["wer"] for v in per_cohort.values() if v["wer"] is not None]
    errors = np.array([u["errors"] for u in per_utt], dtype=float)
    words = np.array([u["words"] for u in per_utt], dtype=float)
    overall, lo, hi = wer_interval(errors, words)
    return {"per_cohort": per_cohort, "mean": float(np.mean(rated)), "max": float(np.max(rated)),
            "variance": float(np.var(rated)), "overall": overall, "overall_ci95": [lo, hi]}


def paired(per_utt: list[dict], base: list[dict], mask: np.ndarray) -> dict:
    """Paired-bootstrap WER difference (system - no fine-tuning) on the utterances in `mask`."""
    errors = np.array([u["errors"] for u in per_utt], dtype=float)[mask]
    base_errors = np.array([u["errors"] for u in base], dtype=float)[mask]
    words = np.array([u["words"] for u in base], dtype=float)[mask]
    if not mask.any() or words.sum() == 0:
        return {"difference": None, "ci95": None, "relative": None, "words": 0}
    result = paired_wer_difference(errors, base_errors, words)
    base_wer = base_errors.sum() / words.sum()
    return {**result, "relative": result["difference"] / base_wer if base_wer else None, "words": int(words.sum())}


def run(config: Path, embedder: Path, lambdas: list[float], work: Path, out: Path, worst: int = 1,
        min_speakers: int = 3, k: int | None = None, max_k: int = 10, embed_per_speaker: int = 10, seed: int = 0,
        threads: int = 1) -> dict:
    from framegate.export.onnx_export import export_bundle
    from framegate.export.train import TrainConfig, Trainer

    work, out = Path(work), Path(out)
    work.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.load(config)
    if not cfg.init_from:
        raise ValueError(f"{config}: a fine-tuning recipe needs init_from (the base model's weights)")
    corpus = Path(cfg.corpus_dir)
    base_bundle = export_bundle(Path(cfg.init_from), work / "base_bundle", model_card={"base": cfg.init_from})
    emb = SpeakerEmbedder(embedder, num_threads=threads)

    # 1. cohorts on dev voices
    dev = speech_rows(corpus / "dev.jsonl").rows
    dev_per_utt = per_utterance_results(dev, transcribe_rows(dev, base_bundle, threads))
    dev_speakers, dev_emb, dev_weights = per_speaker(dev, embed_rows(dev, emb))
    cohorts = discover(dev_speakers, dev_emb, dev_weights, k, max_k, seed)
    table = rank_cohorts(dev_per_utt, dict(zip(dev_speakers, cohorts.labels.tolist())))
    centroids = cohorts.centroids[[c["kmeans_label"] for c in table]]  # row r = the cohort ranked r
    worst_ids = list(range(min(worst, len(table))))

    # 2. fine-tuning data: training voices nearest the worst cohorts
    train = speech_rows(corpus / "train.jsonl").rows
    placed = _sample_per_speaker(train, embed_per_speaker, seed)
    train_speakers, train_emb, _ = per_speaker(placed, embed_rows(placed, emb))
    chosen = set(finetune_voices(train_speakers, train_emb, centroids, worst_ids, min_speakers))
    finetune = work / "finetune.jsonl"
    finetune.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train if r["speaker"] in chosen),
                        encoding="utf-8")

    # 3. fine-tuning runs
    bundles = {"none": base_bundle}
    fisher = None
    for lam in [0.0, *lambdas]:
        name = "plain" if lam == 0 else f"ewc_{lam:g}"
        run_dir = work / f"lambda_{lam:g}"
        run_dir.mkdir(parents=True, exist_ok=True)
        if lam > 0 and fisher is not None and not (run_dir / "fisher.pt").exists():
            shutil.copyfile(fisher, run_dir / "fisher.pt")
        trainer = Trainer(replace(cfg, work_dir=str(run_dir), finetune_on=str(finetune), ewc_lambda=lam))
        if not trainer.train():  # a stop request: its checkpoint is saved, the next run resumes it
            raise SystemExit(f"stopped while fine-tuning {run_dir}; run the same command again to resume")
        if lam > 0:
            fisher = run_dir / "fisher.pt"
        bundles[name] = run_dir / "bundle"

    # 4. evaluation on test voices assigned to the dev cohorts
    test = speech_rows(corpus / "test.jsonl").rows
    test_speakers, test_emb, _ = per_speaker(test, embed_rows(test, emb))
    cohort_of = dict(zip(test_speakers, assign(test_emb, centroids).tolist()))
    systems, per_system = {}, {}
    for name, bundle in bundles.items():
        per_utt = per_utterance_results(test, transcribe_rows(test, bundle, threads))
        for u in per_utt:
            u["cohort"] = cohort_of[u["speaker"]]
        per_system[name] = per_utt
        systems[name] = system_figures(per_utt, [c["id"] for c in table])
    base = per_system["none"]
    in_worst = np.array([u["cohort"] in worst_ids for u in base])
    everything = np.ones(len(base), dtype=bool)
    for name, per_utt in per_system.items():
        if name != "none":
            systems[name]["vs_none"] = {"worst": paired(per_utt, base, in_worst),
                                        "rest": paired(per_utt, base, ~in_worst),
                                        "overall": paired(per_utt, base, everything)}
    checks = {name: _checks(systems, name) for name in systems if name.startswith("ewc_")}
    per_utt_path = out.with_name(out.stem + "_utterances.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    per_utt_path.write_text("".join(json.dumps({**u, "system": name}, ensure_ascii=False) + "\n"
                                    for name, rows in per_system.items() for u in rows), encoding="utf-8")
    report = {"schema": SCHEMA, "speech": "synthetic", "recipe": str(config), "base": cfg.init_from,
              "embedder": str(emb.path), "corpus": str(corpus),
              "dev_cohorts": [{key: c[key] for key in ("id", "wer", "speakers", "n_speakers", "n_utterances")}
                              for c in table],
              "k": cohorts.k, "worst_cohorts": worst_ids, "finetune_voices": sorted(chosen),
              "finetune_utterances": sum(1 for r in train if r["speaker"] in chosen),
              "test_voices_per_cohort": {str(c["id"]): sum(1 for v in cohort_of.values() if v == c["id"])
                                         for c in table},
              "systems": systems, "checks": checks, "lambdas": [0.0, *lambdas],
              "per_utterance": str(per_utt_path), "machine": machine_info()}
    write_report(out, report, _figure(report))
    return report


def _checks(systems: dict, name: str) -> dict:
    """The issue's criteria for one EWC run (None where the data cannot say)."""
    ewc, plain = systems[name]["vs_none"], systems["plain"]["vs_none"]
    worst = ewc["worst"]
    lowered = (worst["relative"] is not None and worst["relative"] <= -MIN_RELATIVE_GAIN
               and worst["ci95"][1] < 0)
    rest_better = (None if ewc["rest"]["difference"] is None
                   else ewc["rest"]["difference"] < plain["rest"]["difference"])
    overall_ok = systems[name]["overall"] <= systems["none"]["overall_ci95"][1]
    return {"worst_lowered_3pct_ci_excludes_zero": bool(lowered), "rest_degrade_less_than_plain": rest_better,
            "overall_within_base_ci": bool(overall_ok)}


def _figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["systems"])
    cohorts = list(report["systems"]["none"]["per_cohort"])
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * (len(cohorts) + 1) * len(names) / 2 + 3), 4.5))
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        s = report["systems"][name]
        values = [100 * (s["per_cohort"][c]["wer"] if s["per_cohort"][c]["wer"] is not None else np.nan)
                  for c in cohorts] + [100 * s["overall"]]
        ax.bar(np.arange(len(cohorts) + 1) + n * width, values, width, label=name)
    labels = [f"#{c}{' (worst)' if int(c) in report['worst_cohorts'] else ''}" for c in cohorts] + ["overall"]
    ax.set_xticks(np.arange(len(cohorts) + 1) + width * (len(names) - 1) / 2, labels)
    ax.set_ylabel("test WER % (synthetic; voices assigned to dev cohorts)")
    ax.set_title("Fine-tuning for the worst cohort: none, plain, EWC")
    ax.legend()
    return fig
