"""Two-speaker conversations: the separator-transducer-segmenter beside two baselines (issue 8).

`framegate bench conversations --model STS_BUNDLE --manifest CONV.jsonl --json OUT` (alias
`bench multitalker`), on conversations from `framegate corpus conversations` (held-out
voices: use the test split's). Every engine hears the same mixture, fed in 100 ms blocks.

Per overlap-ratio bucket:
  cpwer / orcwer     meeteval's concatenated minimum-permutation WER (reference: each
                     speaker's turns joined; hypothesis: the STS segments joined per speaker,
                     speakers found by clustering the segments' audio as the cascade does, since
                     a turn takes the first free channel and channels are not speakers) and
                     ORC-WER (each reference turn may go to either channel);
                     cpwer_channels_as_speakers: cpWER with each channel taken as one speaker
  turn_count_accuracy  share of conversations whose segment count equals the turn count
  sot_delay_ms / eot_delay_ms  p50, p90 of segment start/end minus reference turn start/end,
                     over turns matched one-to-one to segments by time overlap (Hungarian)
  baselines          single_speaker: the single-speaker bundle on the mixture (one channel,
                     its endpointed utterances as segments); cascade: energy segmentation,
                     two-way k-means of per-segment speaker embeddings (--embedding: the
                     fairness issue's embedding bundle; without it, mean and standard deviation
                     of the log-mel bins) into channels, the single-speaker bundle on each segment
  sts_minus_baseline cpWER(STS) - cpWER(baseline) with a paired-bootstrap 95 % interval over
                     conversations (DESIGN.md's convention for WER comparisons)
  single_alone_wer   the single-speaker bundle's WER on the same turns played alone (the
                     done-when reference: STS cpWER <= 1.5x this at <= 20 % overlap)
and the STS real-time factor; `search`: the STS bundle's search on each channel (`--beam N`
for beam search) and the single-speaker bundle's own (the default bundle's: beam + LM).
Everything here is synthetic speech.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from framegate.benchmarks.report import machine_info, paired_wer_difference, word_errors, write_report
from framegate.engine.audio import canonical_16k, read_audio
from framegate.engine.errors import FramegateError
from framegate.engine.features import SAMPLE_RATE, compute_fbank
from framegate.engine.recognizer import DEFAULT_BUNDLE, Recognizer
from framegate.engine.stream import Segment
from framegate.engine.transcript_json import segment_record
from framegate.engine.turns import ordered

SCHEMA = "framegate.bench.conversations/1"
BLOCK_S = 0.1
BUCKETS = ((0.0, 0.0, "0 %"), (0.0, 0.1, "0-10 %"), (0.1, 0.2, "10-20 %"), (0.2, 0.4, "20-40 %"), (0.4, 1.0, "> 40 %"))


def bucket_of(ratio: float) -> str:
    for lo, hi, name in BUCKETS:
        if (ratio == 0.0 and hi == 0.0) or lo < ratio <= hi:
            return name
    return BUCKETS[-1][2]


def stream_segments(recognizer: Recognizer, samples_16k: np.ndarray) -> tuple[list[Segment], str, float]:
    """Segments, text and compute seconds of one signal fed in 100 ms blocks."""
    started = time.perf_counter()
    stream = recognizer.create_stream()
    step = int(BLOCK_S * SAMPLE_RATE)
    for i in range(0, len(samples_16k), step):
        stream.accept_waveform(SAMPLE_RATE, samples_16k[i:i + step])
        recognizer.decode(stream)
    stream.input_finished()
    recognizer.decode(stream)
    result = stream.result
    return result.segments, result.text, time.perf_counter() - started


def cp_orc(turns: list[dict], channels: dict[str, str]) -> tuple[int, int, int]:
    """(cpWER errors, ORC-WER errors, reference words) of one conversation, by meeteval."""
    from meeteval.wer.wer.cp import cp_word_error_rate
    from meeteval.wer.wer.orc import orc_word_error_rate

    by_speaker: dict[str, list[str]] = {}
    for turn in sorted(turns, key=lambda t: t["start"]):
        by_speaker.setdefault(turn["speaker"], []).append(turn["text"])
    reference = {k: " ".join(v) for k, v in by_speaker.items()}
    hypothesis = {k: v for k, v in channels.items()} or {"0": ""}
    cp = cp_word_error_rate(reference=reference, hypothesis=hypothesis, reference_sort=False, hypothesis_sort=False)
    orc = orc_word_error_rate(reference=[t["text"] for t in sorted(turns, key=lambda t: t["start"])],
                              hypothesis=hypothesis, reference_sort=False, hypothesis_sort=False)
    return int(cp.errors), int(orc.errors), int(cp.length)


def by_channel(segments: list[Segment]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for seg in sorted(segments, key=lambda s: s.start_s):
        if seg.text:
            out.setdefault(str(seg.channel), []).append(seg.text)
    return {k: " ".join(v) for k, v in out.items()}


def boundary_delays(turns: list[dict], segments: list[Segment]) -> tuple[list[float], list[float]]:
    """(start delays, end delays) in ms of turns matched one-to-one to segments by time overlap."""
    from scipy.optimize import linear_sum_assignment

    if not turns or not segments:
        return [], []
    overlap = np.array([[max(0.0, min(t["end"], s.end_s) - max(t["start"], s.start_s)) for s in segments]
                        for t in turns])
    rows, cols = linear_sum_assignment(-overlap)
    pairs = [(turns[r], segments[c]) for r, c in zip(rows, cols) if overlap[r, c] > 0]
    return ([1000 * (s.start_s - t["start"]) for t, s in pairs], [1000 * (s.end_s - t["end"]) for t, s in pairs])


def energy_segments(samples_16k: np.ndarray, min_gap_s: float = 0.3, min_len_s: float = 0.2,
                    pad_s: float = 0.1) -> list[tuple[int, int]]:
    """Speech stretches (sample ranges) by 10 ms frame energy above the noise floor, short gaps bridged."""
    frame = SAMPLE_RATE // 100
    n = len(samples_16k) // frame
    if n == 0:
        return []
    energy = 20 * np.log10(np.sqrt(np.mean(samples_16k[:n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-10)
    active = energy > max(np.percentile(energy, 10) + 10.0, energy.max() - 40.0)
    spans: list[list[int]] = []
    for i in np.flatnonzero(active):
        if spans and i - spans[-1][1] <= min_gap_s * 100:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    pad = round(pad_s * 100)
    return [(max(0, a - pad) * frame, min(n, b + pad) * frame) for a, b in spans if (b - a) >= min_len_s * 100]


def fbank_statistics(samples_16k: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of the log-mel bins: the cascade's stand-in speaker embedding."""
    feats = compute_fbank(samples_16k)
    return np.concatenate([feats.mean(0), feats.std(0)]) if len(feats) else np.zeros(160)


def two_speakers(samples_16k: np.ndarray, spans: list[tuple[int, int]],
                 embed: Callable[[np.ndarray], np.ndarray]) -> list[int]:
    """Speaker label 0/1 of each sample span: 2-way k-means of the spans' standardized embeddings."""
    if len(spans) < 2:
        return [0] * len(spans)
    from sklearn.cluster import KMeans

    x = np.asarray([embed(samples_16k[a:b]) for a, b in spans])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return KMeans(n_clusters=2, n_init=4, random_state=0).fit_predict(x).tolist()


def by_speaker(samples_16k: np.ndarray, segments: list[Segment],
               embed: Callable[[np.ndarray], np.ndarray]) -> dict[str, str]:
    """STS segments joined per speaker, speakers found by clustering the segments' audio.

    STS channels are not speakers: a turn takes the first free channel, so in a conversation
    without overlap every turn is on channel 0. Who said what (cpWER) needs each segment's
    speaker; the segments' own spans of the mixture are clustered as the cascade clusters its
    energy segments. Channels stay what ORC-WER scores."""
    spoken = [s for s in segments if s.text]
    spans = [(int(s.start_s * SAMPLE_RATE), max(int(s.end_s * SAMPLE_RATE), int(s.start_s * SAMPLE_RATE) + 1))
             for s in spoken]
    return by_channel([replace(s, channel=label) for s, label in zip(spoken, two_speakers(samples_16k, spans, embed))])


def cascade(recognizer: Recognizer, samples_16k: np.ndarray,
            embed: Callable[[np.ndarray], np.ndarray] = fbank_statistics) -> list[Segment]:
    """Energy segmentation -> 2-way k-means on per-segment embeddings -> the single-speaker bundle per segment."""
    spans = energy_segments(samples_16k)
    if not spans:
        return []
    labels = two_speakers(samples_16k, spans, embed)
    out = []
    for (a, b), label in zip(spans, labels):
        text = recognizer.transcribe(samples_16k[a:b], SAMPLE_RATE).text
        out.append(Segment(text=text, tokens=[], timestamps=[], start_s=a / SAMPLE_RATE, end_s=b / SAMPLE_RATE,
                           channel=int(label)))
    return out


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None, "n": 0}
    return {"p50": round(float(np.percentile(values, 50)), 1), "p90": round(float(np.percentile(values, 90)), 1),
            "n": len(values)}


def run(model: Path, manifest: Path, out: Path, single: Path | None = None, threads: int = 1,
        limit: int | None = None, embedding: Path | None = None, beam: int | None = None) -> dict:
    """`embedding`: a speaker-embedding bundle (engine/speaker_embedding.py) for the cascade's
    clustering; None clusters per-segment fbank statistics. `beam`: the STS bundle's beam on each
    channel (None: its own search); the single-speaker bundle keeps its own search."""
    manifest, out = Path(manifest), Path(out)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    if not rows:
        raise FramegateError(f"{manifest}: no conversations")
    sts = Recognizer(model, num_threads=threads, beam=beam)
    if sts.bundle.model_type != "sts":
        raise FramegateError(f"bundle '{model}' has model_type {sts.bundle.model_type!r}; bench conversations "
                             f"needs a two-channel 'sts' bundle (--single takes the single-speaker one)")
    single_path = single if single is not None else (DEFAULT_BUNDLE if DEFAULT_BUNDLE.is_dir() else None)
    if single_path is None:
        raise FramegateError("the baselines need a single-speaker bundle: pass --single BUNDLE "
                             "(no default bundle is installed)")
    base = Recognizer(single_path, num_threads=threads)
    embed, embed_name = fbank_statistics, "fbank statistics (mean, std of log-mel)"
    if embedding is not None:
        from framegate.engine.speaker_embedding import SpeakerEmbedder

        embedder = SpeakerEmbedder(embedding, num_threads=threads)
        embed, embed_name = (lambda x: embedder.embed(x, SAMPLE_RATE)), f"speaker embedding bundle {embedding}"
    per_conv = []
    compute_s = audio_s = 0.0
    for row in tqdm(rows, desc="conversations", unit="conv"):
        samples, rate = read_audio(manifest.parent / row["audio"])
        samples = canonical_16k(samples, rate)
        turns = row["turns"]
        segments, _, seconds = stream_segments(sts, samples)
        compute_s += seconds
        audio_s += len(samples) / SAMPLE_RATE
        starts, ends = boundary_delays(turns, segments)
        base_segments, base_text, _ = stream_segments(base, samples)
        casc = cascade(base, samples, embed)
        alone_refs, alone_hyps = [], []
        for turn in turns:
            source = Path(row.get("source_root", manifest.parent)) / turn["source"]
            alone, alone_rate = read_audio(source)
            alone_refs.append(turn["text"])
            alone_hyps.append(base.transcribe(alone, alone_rate).text)
        alone_errors, alone_words = word_errors(alone_refs, alone_hyps)
        record = {"audio": row["audio"], "overlap_ratio": row["overlap_ratio"], "bucket": bucket_of(row["overlap_ratio"]),
                  "turns": len(turns), "segments": len(segments), "sot_delay_ms": starts, "eot_delay_ms": ends,
                  "hyp": by_channel(segments), "hyp_speakers": by_speaker(samples, segments, embed),
                  # what the counts and delays came from, so a miscount can be read per turn
                  "ref_turns": [{k: turn[k] for k in ("speaker", "start", "end", "text")} for turn in turns],
                  "hyp_segments": [segment_record(seg) for seg in ordered(segments)]}
        record["cp_errors"], _, record["words"] = cp_orc(turns, record["hyp_speakers"])
        record["cp_channel_errors"], record["orc_errors"], _ = cp_orc(turns, record["hyp"])
        record["single_speaker"] = dict(zip(("cp_errors", "orc_errors"), cp_orc(turns, {"0": base_text})[:2]),
                                        segments=len(base_segments))
        record["cascade"] = dict(zip(("cp_errors", "orc_errors"), cp_orc(turns, by_channel(casc))[:2]),
                                 segments=len(casc))
        record["alone_errors"], record["alone_words"] = int(alone_errors.sum()), int(alone_words.sum())
        per_conv.append(record)
    buckets = [_bucket(name, [c for c in per_conv if c["bucket"] == name]) for _, _, name in BUCKETS]
    buckets = [b for b in buckets if b is not None]
    overall = _bucket("all", per_conv)
    upto20 = _bucket("<= 20 %", [c for c in per_conv if c["overlap_ratio"] <= 0.2])
    report = {"schema": SCHEMA, "speech": "synthetic", "model": str(sts.bundle.path), "single_speaker": str(base.bundle.path),
              "search": {"sts": sts.search_settings, "single_speaker": base.search_settings},
              "manifest": str(manifest), "conversations": len(per_conv), "buckets": buckets, "all": overall,
              "done_when": _done_when(upto20), "rtf": compute_s / max(audio_s, 1e-9), "onnx_threads": threads,
              "audio_s": audio_s, "embedding": embed_name, "machine": machine_info()}
    per_path = out.with_name(out.stem + "_conversations.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    per_path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in per_conv), encoding="utf-8")
    report["per_conversation"] = str(per_path)
    write_report(out, report, _figure(buckets))
    return report


def _bucket(name: str, convs: list[dict]) -> dict | None:
    if not convs:
        return None
    words = max(1, sum(c["words"] for c in convs))

    def rate(key: str, sub: str | None = None) -> float:
        return sum((c[sub][key] if sub else c[key]) for c in convs) / words

    return {"overlap": name, "conversations": len(convs), "words": words,
            "cpwer": rate("cp_errors"), "orcwer": rate("orc_errors"), "cpwer_channels_as_speakers": rate("cp_channel_errors"),
            "turn_count_accuracy": sum(c["segments"] == c["turns"] for c in convs) / len(convs),
            "sot_delay_ms": _percentiles([d for c in convs for d in c["sot_delay_ms"]]),
            "eot_delay_ms": _percentiles([d for c in convs for d in c["eot_delay_ms"]]),
            "single_alone_wer": sum(c["alone_errors"] for c in convs) / max(1, sum(c["alone_words"] for c in convs)),
            "baselines": {name_: {"cpwer": rate("cp_errors", name_), "orcwer": rate("orc_errors", name_),
                                  "turn_count_accuracy": sum(c[name_]["segments"] == c["turns"] for c in convs) / len(convs),
                                  "sts_minus_baseline": paired_wer_difference(
                                      np.array([c["cp_errors"] for c in convs], dtype=float),
                                      np.array([c[name_]["cp_errors"] for c in convs], dtype=float),
                                      np.array([c["words"] for c in convs], dtype=float))}
                          for name_ in ("single_speaker", "cascade")}}


def _done_when(b: dict | None) -> dict:
    """Issue 8's targets on conversations with at most 20 % overlap, measured, each with its verdict."""
    if b is None:
        return {"conversations": 0}
    eot_p90 = b["eot_delay_ms"]["p90"]
    return {"conversations": b["conversations"], "cpwer": b["cpwer"], "single_alone_wer": b["single_alone_wer"],
            "cpwer_within_1_5x_alone": b["cpwer"] <= 1.5 * b["single_alone_wer"],
            "turn_count_accuracy": b["turn_count_accuracy"], "turn_count_at_least_90": b["turn_count_accuracy"] >= 0.9,
            "eot_p90_ms": eot_p90, "eot_p90_at_most_600": eot_p90 is not None and eot_p90 <= 600,
            "beats_baselines": all(b["cpwer"] < v["cpwer"] for v in b["baselines"].values())}


def _figure(buckets: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [b["overlap"] for b in buckets]
    x = np.arange(len(names))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    series = [("STS", [b["cpwer"] for b in buckets], "#4c72b0"),
              ("single-speaker on mixture", [b["baselines"]["single_speaker"]["cpwer"] for b in buckets], "#dd8452"),
              ("cascade", [b["baselines"]["cascade"]["cpwer"] for b in buckets], "#55a868"),
              ("single-speaker, turns alone (WER)", [b["single_alone_wer"] for b in buckets], "#8c8c8c")]
    for k, (label, values, color) in enumerate(series):
        ax.bar(x + (k - 1.5) * 0.2, [100 * v for v in values], 0.2, label=label, color=color)
    ax.set_xticks(x, names)
    ax.set_xlabel("overlap ratio")
    ax.set_ylabel("cpWER % (synthetic speech)")
    ax.set_title("cpWER by overlap")
    ax.legend(fontsize=8)
    for key, color in (("sot_delay_ms", "#4c72b0"), ("eot_delay_ms", "#c44e52")):
        p50 = [b[key]["p50"] if b[key]["p50"] is not None else np.nan for b in buckets]
        p90 = [b[key]["p90"] if b[key]["p90"] is not None else np.nan for b in buckets]
        ax2.plot(x, p50, "o-", color=color, label=f"{key[:3]} p50")
        ax2.plot(x, p90, "s--", color=color, label=f"{key[:3]} p90")
    ax2.axhline(600, color="#8c8c8c", linestyle=":", label="eot p90 target 600 ms")
    ax2.set_xticks(x, names)
    ax2.set_ylabel("emission delay vs reference (ms)")
    ax2.set_title("<sot>/<eot> delay; turn-count accuracy: " +
                  ", ".join(f"{100 * b['turn_count_accuracy']:.0f} %" for b in buckets))
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig
