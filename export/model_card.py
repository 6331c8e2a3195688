"""MODEL_CARD.md for a bundle: what it was trained on, how long, and how well it does.

Every number comes from a file a command wrote (corpus summary, training checkpoint,
benchmark reports); the card only formats them, so it cannot claim what was not measured.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


_PARTS = {"encoder": "its encoder", "prediction": "its prediction network and joiner", "all": "all its weights"}


def _corpus_seeds(seed: int | list[int]) -> str:
    """A merged corpus (`corpus merge`) records one seed per build it joins."""
    return f"corpus seeds {', '.join(map(str, seed))} (merged builds)" if isinstance(seed, list) else f"corpus seed {seed}"


def _warm_start_note(warm_start: dict | None, first: bool = True) -> str:
    """The earlier training a warm-started model stands on, stage by stage: its steps and wall time count too."""
    if not warm_start:
        return "." if not first else ""
    lead, when = (" Warm-started from", "before this run") if first else (", itself warm-started from", "before that")
    return (f"{lead} {warm_start['from']} ({_PARTS[warm_start['parts']]}: {warm_start['step']} steps, "
            f"{warm_start['train_seconds'] / 3600:.2f} h {when}){_warm_start_note(warm_start.get('before'), False)}")


def _stage_hours(checkpoint: dict) -> str:
    """Wall hours of this run and of every stage it was warm-started from ("at least" when a
    stage was saved before checkpoints recorded their own warm start)."""
    seconds, stage, known = checkpoint.get("train_seconds", 0.0), checkpoint.get("warm_start"), True
    while stage:
        seconds, known = seconds + stage["train_seconds"], "before" in stage
        stage = stage.get("before")
    return f"{'' if known else 'at least '}{seconds / 3600:.2f} h"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _search_note(meta: dict, wer: dict) -> str:
    """How the WER above was decoded: the search is part of the result."""
    search = wer.get("search", {"method": "greedy"})
    if search["method"] == "greedy":
        return (f"Decoded with greedy search (at most one token per {meta['encoder']['subsampling'] * 10} ms "
                f"encoder frame).")
    lm = meta.get("model_card", {}).get("language_model", {})
    note = f"Decoded with modified beam search (beam {search['beam']})"
    if search.get("lm_order"):
        text = f"{lm['sentences']} training sentences from {lm['source']}" if lm else "training text"
        note += (f" and shallow fusion of the bundle's {search['lm_order']}-gram token language model (weight "
                 f"{search['lm_weight']}, {search['token_bonus']} per token), estimated on {text} "
                 f"(no dev or test sentence)")
    return note + "; `framegate transcribe --beam 1 --lm-weight 0` decodes greedily."


def _quantization_note(meta: dict) -> list[str]:
    """The int8 bundle says so, and that its figures below are its own."""
    q = meta.get("quantization")
    if not q:
        return []
    ranges = ", ".join(f"{r:.3g}" for r in q["lstm_input_range"])
    return ["", f"LSTM weights in {q['scheme']} (ONNX Runtime's DynamicQuantizeLSTM), the other layers in fp32. "
                f"Each LSTM's input is clipped to a fixed range (+-{ranges}; calibrated on "
                f"{q['calibration']['source']}), so every encoder call rounds alike and streaming equals the "
                f"whole-utterance pass. The word error rates and speed below are this bundle's own."]


def render_model_card(bundle: Path, corpus_summary: dict, checkpoint: dict, wer: dict,
                      real_speech: dict | None) -> str:
    meta = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    enc, dec = meta["encoder"], meta["decoder"]
    size_mb = sum(f["bytes"] for f in meta["files"].values()) / 1e6
    train = corpus_summary["splits"]["train"]
    latency_ms = (enc["chunk_frames"] + enc["lookahead_frames"]) * 10
    lines = [
        f"# Model card: {bundle.name}",
        "",
        f"Streaming LSTM transducer: conv subsampling x{enc['subsampling']}, {enc['num_layers']} "
        f"{'projected ' if enc['rnn_hidden_size'] != enc['d_model'] else ''}LSTM "
        f"layers (d_model {enc['d_model']}, hidden {enc['rnn_hidden_size']}), stateless decoder (context "
        f"{dec['context_size']}), {dec['vocab_size']} BPE tokens. Chunk {enc['chunk_frames'] * 10} ms + lookahead "
        f"{enc['lookahead_frames'] * 10} ms = {latency_ms} ms algorithmic latency. Bundle size {size_mb:.1f} MB.",
        *_quantization_note(meta),
        "",
        "## Training",
        f"- Data: {train['hours']:.1f} h of synthetic speech, {train['utterances']} utterances "
        f"({train['empty_utterances']} silence/noise-only), {len(train['voices'])} voices from "
        f"{len(train['families'])} voice families ({', '.join(f'{k} {v}' for k, v in sorted(train['synthesizers'].items()))} "
        f"utterances), {_corpus_seeds(corpus_summary['seed'])}.",
        f"- Steps: {checkpoint['step']}; training wall time {checkpoint.get('train_seconds', 0) / 3600:.2f} h "
        f"on 2 CPU cores (CPU-hours = 2 x wall hours; {_stage_hours(checkpoint)} with the stages it stands "
        f"on).{_warm_start_note(checkpoint.get('warm_start'))}",
        "- No real human speech was used in training.",
        "",
        "## Word error rate on held-out voice families (synthetic speech)",
        f"Test split: {wer['utterances']} utterances, {wer['words']} words; voice families and sentences never seen "
        f"in training. Overall WER **{_pct(wer['wer'])}** (95 % bootstrap interval {_pct(wer['ci95'][0])} to "
        f"{_pct(wer['ci95'][1])}).",
        "",
        "| family | synthesizers | utterances | words | WER | 95 % CI |",
        "|---|---|---|---|---|---|",
    ]
    for family, f in wer["per_family"].items():
        lines.append(f"| {family} | {', '.join(f['synthesizers']) or '-'} | {f['utterances']} | {f['words']} | "
                     f"{_pct(f['wer']) if f['words'] else '-'} | "
                     f"{_pct(f['ci95'][0]) + ' - ' + _pct(f['ci95'][1]) if f['words'] else '-'} |")
    lines += ["", _search_note(meta, wer), "", "## Speed",
              f"Real-time factor {wer['rtf']:.4f} on {wer['onnx_threads']} ONNX Runtime thread(s) "
              f"({wer['machine']['machine']}, {wer['machine']['cpus']} cores, load average "
              f"{wer['machine'].get('load_average_1min', 'not recorded')} at the end of the run; fbank and decoding "
              f"included, audio fed in 100 ms blocks)."]
    if real_speech:
        lines += ["", "## Real human speech (alsa-utils recorded prompts, 17 words: a sanity check, not a test set)",
                  "| engine | WER | RTF |", "|---|---|---|"]
        for name, r in real_speech["engines"].items():
            lines.append(f"| {name} | {_pct(r['wer'])} | {r['rtf']:.4f} |")
    lines += ["", "## Voices and licences",
              "The model was trained on audio from these synthesizers; several voices are licensed for "
              "non-commercial use only, which may bind models trained on them:", ""]
    for name, licence in sorted(corpus_summary.get("licences", {}).items()):
        lines.append(f"- {name}: {licence}")
    return "\n".join(lines) + "\n"


def write_model_card(bundle: Path, corpus_dir: Path, checkpoint: Path, wer_report: Path,
                     real_speech_report: Path | None = None) -> Path:
    corpus_summary = json.loads((corpus_dir / "summary.json").read_text(encoding="utf-8"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    wer = json.loads(wer_report.read_text(encoding="utf-8"))
    real = json.loads(real_speech_report.read_text(encoding="utf-8")) if real_speech_report else None
    out = bundle / "MODEL_CARD.md"
    out.write_text(render_model_card(bundle, corpus_summary, state, wer, real), encoding="utf-8")
    return out
