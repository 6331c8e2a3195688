"""`framegate bench latency`: speed, latency and memory of a bundle, beside its peers, in one run.

Every engine runs alone in a child process (benchmarks/peers/) on the same 16 kHz audio
(benchmarks/utterances.py): framegate at each thread count asked for, the same bundle in
a bare ONNX Runtime loop, PyTorch eager on the checkpoint (with --checkpoint),
PocketSphinx, and sherpa-onnx on the bundle's own graphs (the bare loop, PyTorch and
sherpa-onnx run the LSTM transducer contract only: for a ConvRNN-T or gated bundle the
report names them under `peers_skipped`). The report (JSON + PNG) holds
the issue's keys (`rtf`, `chunk_ms`, `last_word_ms`, `endpoint_ms`, `algorithmic_ms`,
`first_partial_ms`, `peak_rss_mb`, `bundle_mb`, `peers`) for framegate's first thread
count, the same per thread count under `threads`, the token agreement between engines,
and the physical limit (sgemm peak against the model's MAC rate). benchmarks/README.md
says what each figure means and how the real-time pace is simulated.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from framegate.benchmarks.interleaved import ratio_interval, run_interleaved
from framegate.benchmarks.peers import PEERS, WORD_MARKER
from framegate.benchmarks.physical_limit import SGEMM_SIZE, run_macs, sgemm_peak
from framegate.benchmarks.report import machine_info, paired_wer_difference, wer_interval, word_errors, write_report
from framegate.benchmarks.utterances import Utterance, prepare, read_inputs
from framegate.engine.bundle import Bundle
from framegate.engine.errors import FramegateError
from framegate.engine.recognizer import DEFAULT_BUNDLE
from framegate.export.sherpa_export import check_sherpa_compatible, write_sherpa_dir

SCHEMA = "framegate.bench.latency/1"
FLUSH_PAD_S = 0.25  # digital silence after each file for every engine: sherpa-onnx decodes whole windows only
THROUGHPUT_BLOCK_S = 0.1  # every engine alike, as a live source delivers audio
LSTM_ONLY_PEERS = {
    "onnxruntime": "the bare ONNX Runtime loop decodes the LSTM transducer contract only; this encoder "
                   "runs part of its work in framegate's C++ kernels",
    "sherpa-onnx": "sherpa-onnx runs the LSTM transducer contract only",
}
BENCHED_MODEL_TYPES = ("lstm_transducer", "convrnnt", "gated_transformer")


@dataclass(frozen=True)
class LatencyOptions:
    """threads: framegate's ONNX Runtime thread counts (the first is the headline and the
    peers'); block_ms: a live source's block; tail_s: audio after each utterance at real
    pace (longer than the endpoint rule's silence); real_time_utts: utterances also run at
    true wall-clock pace to check the virtual clock; rounds: throughput passes over the
    utterances, each utterance going through every engine in turn (benchmarks/interleaved.py),
    its time the fastest of its rounds, so that the drift of a shared machine's speed lands
    on every engine alike; peers: the peers to
    run (None: every one that takes the bundle; empty: framegate alone, e.g. to pair two
    bundles' latencies with `bench compare` without spending minutes on PocketSphinx)."""

    threads: tuple[int, ...] = (1, 2)
    block_ms: float = 20.0
    tail_s: float = 2.0
    real_time_utts: int = 2
    rounds: int = 3
    limit: int | None = None
    sgemm_size: int = SGEMM_SIZE
    peers: tuple[str, ...] | None = None

    def validate(self) -> None:
        if not self.threads or any(t < 1 for t in self.threads):
            raise ValueError(f"LatencyOptions.threads must be positive thread counts, got {self.threads}")
        if self.rounds < 1:
            raise ValueError(f"LatencyOptions.rounds must be >= 1, got {self.rounds}")
        if not self.block_ms > 0 or not self.tail_s >= 0 or self.real_time_utts < 0:
            raise ValueError(f"LatencyOptions: block_ms > 0, tail_s >= 0, real_time_utts >= 0 needed, got {self}")
        unknown = set(self.peers or ()) - set(PEERS)
        if unknown:
            raise ValueError(f"LatencyOptions.peers: unknown {sorted(unknown)}; the peers are {', '.join(PEERS)}")


def percentiles(values: list[float], ps: tuple[int, ...]) -> dict[str, float | None]:
    array = np.asarray(values, dtype=np.float64)
    return {f"p{p}": (float(np.percentile(array, p)) if len(array) else None) for p in ps}


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def token_agreement(reference: list[list[str]], other: list[list[str]], ids: list[str]) -> dict:
    """How closely another engine's token sequences match framegate's, utterance by utterance.

    `one_is_prefix`: the shorter sequence starts the longer one, i.e. they differ only at
    the end of the file (sherpa-onnx drops the last partial window that framegate pads).
    """
    edits = [edit_distance(a, b) for a, b in zip(reference, other)]
    longest = sum(max(len(a), len(b)) for a, b in zip(reference, other))
    prefix = [a[:len(b)] == b or b[:len(a)] == a for a, b in zip(reference, other)]
    return {"identical": sum(e == 0 for e in edits) / max(len(edits), 1),
            "one_is_prefix": sum(prefix) / max(len(prefix), 1),
            "token_agreement": 1 - sum(edits) / longest if longest else 1.0,
            "differing": [uid for uid, e in zip(ids, edits) if e][:10]}


def _run_child(name: str, job: dict, work: Path) -> dict:
    job_path, out_path = work / f"{name}_{job['threads']}.job.json", work / f"{name}_{job['threads']}.out.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "framegate.benchmarks.peers.child", name, str(job_path),
                           str(out_path)])
    if done.returncode != 0:
        raise FramegateError(f"benchmark engine '{name}' failed (exit {done.returncode}); its error is printed above")
    return json.loads(out_path.read_text(encoding="utf-8"))


def with_paced_passes(throughput: dict, paced: dict | None) -> dict:
    """An engine's throughput result with its paced passes (framegate only) merged in, record
    by record, and the larger memory of the two processes."""
    if paced is None:
        return throughput
    return dict(throughput, peak_rss_mb=max(throughput["peak_rss_mb"], paced["peak_rss_mb"]),
                final_rss_mb=max(throughput["final_rss_mb"], paced["final_rss_mb"]),
                utterances=[{**p, **t} for t, p in zip(throughput["utterances"], paced["utterances"])])


def _rtf(result: dict) -> float:
    return sum(u["compute_s"] for u in result["utterances"]) / sum(u["audio_s"] for u in result["utterances"])


def _text(record: dict) -> str:
    if "text" in record and "tokens" not in record:
        return record["text"]
    return "".join(record["tokens"]).replace(WORD_MARKER, " ").strip()


def _latencies(records: list[dict], utterances: list[Utterance], key: str) -> dict[str, list[float]]:
    """Per-utterance latencies in ms from the `key` pass ("virtual" or "real_time")."""
    out: dict[str, list[float]] = {"last_word_ms": [], "last_word_compute_ms": [], "settled_ms": [],
                                   "endpoint_ms": [], "first_partial_ms": []}
    for record, utt in zip(records, utterances):
        run = record.get(key)
        if run is None:
            continue
        if run["last_word_s"] is not None:
            out["last_word_ms"].append(1000 * (run["last_word_s"] - utt.speech_end_s))
            out["last_word_compute_ms"].append(1000 * (run["last_word_s"] - run["last_word_arrival_s"]))
        if run["last_token_s"] is not None:
            out["settled_ms"].append(1000 * (run["last_token_s"] - utt.speech_end_s))
        if run["endpoint_s"] is not None:
            out["endpoint_ms"].append(1000 * (run["endpoint_s"] - utt.speech_end_s))
        if run["first_token_s"] is not None:
            out["first_partial_ms"].append(1000 * (run["first_token_s"] - utt.speech_start_s))
    return out


def _skipped_peers(ran: dict, options: LatencyOptions) -> dict[str, str]:
    """Why a peer that could have been in the report is not: left out by --peers, or not on
    the LSTM transducer contract (the pytorch peer without --checkpoint is not listed)."""
    skipped = {name: why for name, why in LSTM_ONLY_PEERS.items() if name not in ran}
    if options.peers is not None:
        skipped.update({name: "left out (--peers)" for name in PEERS if name not in options.peers})
    return skipped


def _framegate_summary(result: dict, utterances: list[Utterance], chunk_ms: float) -> dict:
    records = result["utterances"]
    chunk_times = [1000 * t for r in records for t in r["chunk_compute_s"]]
    chunk = percentiles(chunk_times, (50, 95, 99))
    lat = _latencies(records, utterances, "virtual")
    summary = {
        "threads": result["threads"], "rtf": _rtf(result), "chunk_ms": chunk,
        "chunk_ratio": {k: (v / chunk_ms if v is not None else None) for k, v in chunk.items()},
        "chunks": len(chunk_times),
        "last_word_ms": percentiles(lat["last_word_ms"], (50, 95)),
        "last_word_compute_ms": percentiles(lat["last_word_compute_ms"], (50, 95)),
        "settled_ms": percentiles(lat["settled_ms"], (50, 95)),
        "endpoint_ms": percentiles(lat["endpoint_ms"], (50, 95)),
        "first_partial_ms": percentiles(lat["first_partial_ms"], (50, 95)),
        "latency_counts": {k: len(v) for k, v in lat.items()},
        "peak_rss_mb": result["peak_rss_mb"], "final_rss_mb": result["final_rss_mb"],
        "modules_loaded": result["modules"],
    }
    real = _latencies(records, utterances, "real_time")
    if real["last_word_ms"] or real["first_partial_ms"]:
        checked = [(r, u) for r, u in zip(records, utterances) if "real_time" in r]
        virtual = _latencies([r for r, _ in checked], [u for _, u in checked], "virtual")
        summary["pace_check"] = {
            "utterances": len(checked),
            "real_minus_virtual_ms": {k: [a - b for a, b in zip(real[k], virtual[k])]
                                      for k in real if len(real[k]) == len(virtual[k])},
            "real_time_chunk_ms": percentiles([1000 * t for r, _ in checked for t in r["real_time"]["chunk_compute_s"]],
                                              (50, 95, 99)),
        }
    return summary


def _bundle_search_summary(bundle: Bundle, searched: dict, greedy: dict, utterances: list[Utterance],
                           chunk_ms: float) -> dict:
    """The bundle's own search (bundle.json `search`) on the same audio and thread count as the
    greedy headline: its speed, latency and memory, and its WER against greedy's, paired."""
    summary = {"settings": bundle.manifest["search"], **_framegate_summary(searched, utterances, chunk_ms),
               "rtf_over_greedy": _rtf(searched) / _rtf(greedy)}
    scored = [i for i, u in enumerate(utterances) if u.reference is not None]
    if scored:
        refs = [utterances[i].reference for i in scored]
        errors, words = word_errors(refs, [_text(searched["utterances"][i]) for i in scored])
        greedy_errors, _ = word_errors(refs, [_text(greedy["utterances"][i]) for i in scored])
        wer, lo, hi = wer_interval(errors, words)
        summary.update(wer=wer, ci95=[lo, hi], wer_minus_greedy=paired_wer_difference(errors, greedy_errors, words))
    return summary


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def run(model: Path | None, out: Path, manifest: Path | None = None, wav_list: Path | None = None,
        checkpoint: Path | None = None, options: LatencyOptions = LatencyOptions()) -> dict:
    """Run every engine on the inputs, write the report at `out` (and a PNG beside it), return it."""
    options.validate()
    bundle_dir = Path(model) if model is not None else DEFAULT_BUNDLE
    if model is None and not DEFAULT_BUNDLE.is_dir():
        raise FramegateError(f"no default model bundle is installed ({DEFAULT_BUNDLE}); pass --model BUNDLE")
    bundle = Bundle.load(bundle_dir)
    if bundle.model_type not in BENCHED_MODEL_TYPES:
        raise FramegateError(f"bench latency runs {', '.join(BENCHED_MODEL_TYPES)} bundles; '{bundle_dir}' is "
                             f"{bundle.model_type} (two-speaker bundles: bench multitalker)")
    lstm = bundle.model_type == "lstm_transducer"
    if lstm:
        check_sherpa_compatible(bundle)
    if checkpoint is not None and not lstm:
        raise FramegateError(f"--checkpoint: the PyTorch peer streams LSTM transducers only; '{bundle_dir}' is "
                             f"{bundle.model_type}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FramegateError(f"checkpoint '{checkpoint}': no such file")
    if options.peers is not None and "pytorch" in options.peers and checkpoint is None:
        raise FramegateError("the pytorch peer runs the checkpoint the bundle came from: pass --checkpoint")
    enc, hop_ms = bundle.encoder, bundle.features.frame_shift_ms
    chunk_ms = enc.chunk_frames * hop_ms
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="framegate_bench_") as scratch:
        work = Path(scratch)
        utterances = prepare(read_inputs(manifest, wav_list, options.limit), work / "audio")
        job = {"bundle": str(bundle_dir), "utterances": [u.to_dict() for u in utterances],
               "flush_pad_s": FLUSH_PAD_S, "throughput_block_s": THROUGHPUT_BLOCK_S,
               "paced": {"block_ms": options.block_ms, "tail_s": options.tail_s,
                         "real_time_utts": options.real_time_utts}}
        jobs = {("framegate", t): {**job, "threads": t} for t in options.threads}
        if "search" in bundle.manifest:  # the bundle's own search too, beside greedy on the same audio
            jobs[("framegate-search", options.threads[0])] = {**job, "threads": options.threads[0], "search": "bundle"}
        wanted = set(PEERS if options.peers is None else options.peers)
        extras: dict[str, dict] = {}
        if lstm and "onnxruntime" in wanted:
            extras["onnxruntime"] = {}
        if lstm and "sherpa-onnx" in wanted:  # its copy of the graphs only when it runs
            extras["sherpa-onnx"] = {"sherpa_dir": str(write_sherpa_dir(bundle_dir, work / "sherpa-onnx"))}
        if "pocketsphinx" in wanted:
            extras["pocketsphinx"] = {}
        if checkpoint is not None and "pytorch" in wanted:
            extras["pytorch"] = {"checkpoint": str(checkpoint)}
        jobs.update({(name, options.threads[0]): {**job, **extra, "threads": options.threads[0]}
                     for name, extra in extras.items()})
        paced = {key: _run_child(key[0], {**engine_job, "passes": ["paced"]}, work)
                 for key, engine_job in jobs.items() if key[0].startswith("framegate")}
        throughput = run_interleaved({key: (key[0], {**engine_job, "passes": ["throughput"]})
                                      for key, engine_job in jobs.items()}, len(utterances), options.rounds, work)
        results = {key: with_paced_passes(result, paced.get(key)) for key, result in throughput.items()}
        framegate = {t: results[("framegate", t)] for t in options.threads}
        searched = results.get(("framegate-search", options.threads[0]))
        peers = {name: results[(name, options.threads[0])] for name in extras}
    sgemm = sgemm_peak(options.sgemm_size)
    macs = run_macs(bundle_dir, bundle.manifest, framegate[options.threads[0]]["utterances"])
    report = _assemble(bundle, bundle_dir, utterances, framegate, peers, sgemm, macs, options, chunk_ms)
    if searched is not None:
        report["bundle_search"] = _bundle_search_summary(bundle, searched, framegate[options.threads[0]],
                                                         utterances, chunk_ms)
    report["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    report["checkpoint"] = str(checkpoint) if checkpoint is not None else None
    report["inputs"] = {"manifest": str(manifest) if manifest else None, "wav_list": str(wav_list) if wav_list else None}
    per_utt_path = out.with_name(out.stem + "_utterances.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    first = framegate[options.threads[0]]["utterances"]

    def bundle_search_record(i: int) -> dict:  # so two bundles' own searches can be paired per utterance
        if searched is None:
            return {}
        record = searched["utterances"][i]
        return {"bundle_search": {"text": _text(record), "virtual": record["virtual"]}}

    per_utt_path.write_text("".join(json.dumps({**u.to_dict(), "framegate": _text(r), "virtual": r["virtual"],
                                                "real_time": r.get("real_time"), **bundle_search_record(i),
                                                **{n: _text(p["utterances"][i]) for n, p in peers.items()}},
                                               ensure_ascii=False) + "\n"
                                    for i, (u, r) in enumerate(zip(utterances, first))), encoding="utf-8")
    report["per_utterance"] = str(per_utt_path)
    from framegate.benchmarks.latency_figure import figure

    write_report(out, report, figure(report))
    return report


def _assemble(bundle: Bundle, bundle_dir: Path, utterances: list[Utterance], framegate: dict[int, dict],
              peers: dict[str, dict], sgemm: dict, macs: dict, options: LatencyOptions, chunk_ms: float) -> dict:
    per_threads = {str(t): _framegate_summary(r, utterances, chunk_ms) for t, r in framegate.items()}
    head = per_threads[str(options.threads[0])]
    ids = [u.id for u in utterances]
    scored = [i for i, u in enumerate(utterances) if u.reference is not None]
    refs = [utterances[i].reference for i in scored]
    fg_records = framegate[options.threads[0]]["utterances"]
    fg_errors, words = word_errors(refs, [_text(fg_records[i]) for i in scored])
    wer = wer_interval(fg_errors, words) if scored else None
    fg_tokens = [r["tokens"] for r in fg_records]
    peer_reports = {}
    for name, result in peers.items():
        entry: dict = {"rtf": _rtf(result), "threads": result["threads"], "peak_rss_mb": result["peak_rss_mb"],
                       "final_rss_mb": result["final_rss_mb"]}
        if scored:
            errors, _ = word_errors(refs, [_text(result["utterances"][i]) for i in scored])
            p_wer, lo, hi = wer_interval(errors, words)
            entry.update(wer=p_wer, ci95=[lo, hi], wer_minus_framegate=paired_wer_difference(errors, fg_errors, words))
        else:
            entry["wer"] = None
        if "tokens" in result["utterances"][0]:
            entry["tokens_vs_framegate"] = token_agreement(fg_tokens, [r["tokens"] for r in result["utterances"]], ids)
        entry["framegate_time_ratio"] = head["rtf"] / entry["rtf"]
        entry["framegate_time_ratio_ci95"] = ratio_interval([r["compute_s"] for r in fg_records],
                                                            [r["compute_s"] for r in result["utterances"]])
        peer_reports[name] = entry
    macs_per_s = macs["macs_per_audio_s"] / head["rtf"]
    raw_rtf = peer_reports["onnxruntime"]["rtf"] if "onnxruntime" in peer_reports else None
    return {
        "schema": SCHEMA,
        "speech": "synthetic" if scored else "unscored",
        "model": str(bundle_dir), "model_card": bundle.model_card,
        "quantization": bundle.manifest.get("quantization"),
        "utterances": len(utterances), "words": int(words.sum()) if scored else 0,
        "audio_s": sum(u.duration_s for u in utterances),
        "rtf": head["rtf"], "threads_headline": options.threads[0],
        "chunk_ms": head["chunk_ms"], "chunk_ratio": head["chunk_ratio"], "chunk_audio_ms": chunk_ms,
        "last_word_ms": head["last_word_ms"], "last_word_compute_ms": head["last_word_compute_ms"],
        "endpoint_ms": head["endpoint_ms"],
        "algorithmic_ms": bundle.encoder.window_frames * bundle.features.frame_shift_ms,
        "first_partial_ms": head["first_partial_ms"], "latency_counts": head["latency_counts"],
        "peak_rss_mb": head["peak_rss_mb"], "final_rss_mb": head["final_rss_mb"],
        "bundle_mb": sum(p.stat().st_size for p in bundle_dir.iterdir() if p.is_file()) / 1e6,
        "wer": wer[0] if wer else None, "ci95": [wer[1], wer[2]] if wer else None,
        "engine_overhead": head["rtf"] / raw_rtf if raw_rtf else None,
        "engine_overhead_ci95": (peer_reports["onnxruntime"]["framegate_time_ratio_ci95"]
                                 if "onnxruntime" in peer_reports else None),
        "vs_sherpa_onnx": (peer_reports["sherpa-onnx"]["framegate_time_ratio"]
                           if "sherpa-onnx" in peer_reports else None),
        "vs_sherpa_onnx_ci95": (peer_reports["sherpa-onnx"]["framegate_time_ratio_ci95"]
                                if "sherpa-onnx" in peer_reports else None),
        "peers": peer_reports,
        "peers_skipped": _skipped_peers(peer_reports, options),
        "threads": per_threads,
        "physical_limit": {"sgemm": sgemm, "model_macs": macs, "achieved_macs_per_s": macs_per_s,
                           "fraction_of_sgemm_peak": macs_per_s / sgemm["macs_per_s"],
                           "raw_onnxruntime_fraction_of_peak": (macs["macs_per_audio_s"] / raw_rtf / sgemm["macs_per_s"]
                                                                if raw_rtf else None)},
        "method": {"options": asdict(options), "flush_pad_s": FLUSH_PAD_S, "throughput_block_s": THROUGHPUT_BLOCK_S,
                   "throughput": "engines in turn per utterance, order rotating; each utterance's fastest of "
                                 f"{options.rounds} round(s); ratios with 95 % bootstrap intervals over utterances",
                   "clock": "virtual (measured compute, real-time arrival recurrence); "
                            f"first {options.real_time_utts} utterances also at wall-clock pace (pace_check)"},
        "machine": {**machine_info(), "cpu_model": _cpu_model()},
    }
