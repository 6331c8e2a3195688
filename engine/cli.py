"""`framegate`: the one command-line dispatcher.

Verbs: transcribe, mic and web (device path), corpus build, train, export (torch side). Torch-side
modules are imported inside their verbs, so `framegate transcribe` never loads torch.
User errors (every FramegateError, OSError on paths the user named) print one line,
`framegate: error: ...`, and exit with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from framegate.benchmarks.peers import PEERS
from framegate.engine.errors import FramegateError
from framegate.engine.transcript_json import segment_record

if TYPE_CHECKING:
    from framegate.engine.recognizer import Recognizer

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
# A file is not a live source: nobody watches its partial results, so it is read in blocks long
# enough that up to 16 consecutive encoder windows share one call (engine/encoder_runner.py); the
# text is the same as from 100 ms blocks. Measured on the default bundle (60 test utterances, one
# thread): RTF greedy 0.015 -> 0.0094, beam + LM 0.028 -> 0.019, against 100 ms blocks.
FILE_BLOCK_SECONDS = 1.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _transcribe(args: argparse.Namespace) -> int:
    from framegate.engine.audio import read_audio_blocks
    from framegate.engine.recognizer import Recognizer

    recognizer = Recognizer(args.model, num_threads=args.threads, beam=args.beam, lm_weight=args.lm_weight)
    for path in args.files:
        started = time.perf_counter()
        sample_rate, blocks = read_audio_blocks(path, FILE_BLOCK_SECONDS)
        stream = recognizer.create_stream()
        num_samples = 0
        for block in blocks:
            stream.accept_waveform(sample_rate, block)
            recognizer.decode(stream)
            num_samples += len(block)
        stream.input_finished()
        recognizer.decode(stream)
        elapsed = time.perf_counter() - started
        result = stream.result
        if args.json:
            duration_s = num_samples / sample_rate
            record = {"file": str(path), "text": result.text, "tokens": result.tokens,
                      "timestamps": result.timestamps, "duration_s": round(duration_s, 6),
                      "rtf": round(elapsed / duration_s, 6)}
            turns = recognizer.bundle.model_type == "sts"  # two channels: segments are the speaker turns
            if turns or len(result.segments) > 1:
                record["segments"] = [segment_record(s) for s in result.segments]
            print(json.dumps(record, ensure_ascii=False), flush=True)
        elif len(args.files) > 1:
            print(f"{path}\t{result.text}", flush=True)
        else:
            print(result.text, flush=True)
    return 0


def _live_recognizer(args: argparse.Namespace) -> Recognizer:
    """The recognizer of a live verb (mic, web): one-channel bundles; --compute-threshold for gated ones."""
    from framegate.engine.recognizer import Recognizer

    recognizer = Recognizer(args.model, num_threads=args.threads, beam=args.beam, lm_weight=args.lm_weight)
    if recognizer.bundle.model_type == "sts":
        raise FramegateError(f"bundle '{recognizer.bundle.path}' is a two-channel separator-transducer-segmenter; "
                             "the live view shows one channel so far: use 'framegate transcribe --json' for its "
                             "speaker turns")
    gated = recognizer.bundle.model_type == "gated_transformer"
    if gated and args.compute_threshold is not None:
        recognizer.compute_threshold = args.compute_threshold  # checked when the session's stream is made
    elif args.compute_threshold is not None:
        raise FramegateError(f"bundle '{recognizer.bundle.path}' has no compute dial: it is a dense LSTM "
                             "transducer that runs every part for every frame; --compute-threshold applies "
                             "to gated bundles only")
    return recognizer


def _mic(args: argparse.Namespace) -> int:
    """Live transcription from a microphone or, at real-time pace, from a file."""
    from framegate.engine.capture import FileSource
    from framegate.engine.live import LiveSession
    from framegate.engine.live_view import CpuLoadMeter, LiveView
    from framegate.engine.recording import SessionRecorder
    from framegate.engine.terminal_keys import terminal_keys

    if args.list_devices:
        from framegate.engine.mic import list_input_devices

        print("\n".join(list_input_devices()) or "no audio input devices found")
        return 0
    recognizer = _live_recognizer(args)
    gated = recognizer.bundle.model_type == "gated_transformer"
    if args.from_file is not None:
        source = FileSource(args.from_file)
    else:
        from framegate.engine.mic import DeviceSource, parse_device

        source = DeviceSource(parse_device(args.device))
    recorder = SessionRecorder(args.save, source.sample_rate) if args.save is not None else None
    meter = None if gated else CpuLoadMeter()  # None: the session's stream reports the parts it runs
    # Gated bundles: keys turn the compute threshold live, read only where the status line shows it.
    with terminal_keys(sys.stdin) if sys.stdout.isatty() else contextlib.nullcontext() as keys:
        LiveSession(recognizer, source, LiveView(sys.stdout), meter, recorder, keys).run()
    return 0


def _web(args: argparse.Namespace) -> int:
    """The live demo in a browser: a page and its WebSocket endpoint on localhost, until Ctrl-C."""
    try:
        from framegate.engine.web_demo import serve_web_demo
    except ImportError as e:
        raise FramegateError(f"the browser demo needs the 'websockets' package ({e}); "
                             "install it with: pip install 'framegate[web]'") from None
    server = serve_web_demo(_live_recognizer(args), args.port)
    host, port = server.socket.getsockname()[:2]
    print(f"framegate web: open http://{host}:{port}/ in a browser (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def _corpus_build(args: argparse.Namespace) -> int:
    from framegate.export.corpus.build import build_corpus

    try:
        build_corpus(out_dir=args.out, hours=args.hours, seed=args.seed, workers=args.workers,
                     test_words=args.test_words, splits=tuple(args.splits))
    except KeyboardInterrupt:
        print(f"framegate: corpus build interrupted; the utterances rendered so far stay in {args.out}, "
              "and the same command renders only the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _corpus_merge(args: argparse.Namespace) -> int:
    from framegate.export.corpus.merge import merge_corpora

    summary = merge_corpora(args.corpora, args.out)
    train = summary["splits"]["train"]
    print(f"train: {train['hours']:.2f} h, {train['utterances']} utterances from {len(args.corpora)} corpora; "
          f"dev and test from {args.corpora[0]} -> {args.out}")
    return 0


def _corpus_conversations(args: argparse.Namespace) -> int:
    from framegate.export.conversations import write_conversations

    for split, path in write_conversations(args.from_manifest, args.out, args.seed, args.count).items():
        print(f"{split or 'conversations'}: {args.count} conversations -> {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from framegate.export.train import run

    if args.ewc_lambda is not None and args.finetune_on is None:
        raise FramegateError("--ewc-lambda applies to fine-tuning: add --finetune-on COHORT_MANIFEST")
    overrides = {}
    if args.finetune_on is not None:
        overrides = {"finetune_on": str(args.finetune_on), "ewc_lambda": args.ewc_lambda or 0.0}
    if args.threads is not None:
        overrides["threads"] = args.threads
    run(args.config, **overrides)
    return 0


def _train_speaker(args: argparse.Namespace) -> int:
    from framegate.export.train_speaker import run

    bundle = run(args.config)
    if bundle is not None:  # None: a stop request ended the run early (it said so, and resumes next time)
        print(bundle)
    return 0


def _fairness_cohorts(args: argparse.Namespace) -> int:
    from framegate.benchmarks.fairness_cohorts import run

    try:
        report = run(args.model, args.embedder, args.manifest, args.json, k=args.k, max_k=args.max_k,
                     seed=args.seed, repeats=args.repeats, threads=args.threads)
    except ValueError as e:  # too few speakers, a k that does not fit them
        raise FramegateError(str(e)) from None
    md, ctl = report["metadata_partition"], report["shuffled_control"]
    print(f"{report['k']} cohorts over {report['n_speakers']} speakers; bottom cohort WER "
          f"{100 * report['cohorts'][0]['wer']:.1f} % vs {100 * report['wer']:.1f} % overall: gap "
          f"{100 * report['wer_gap']:.0f} % at {100 * report['bottom_share']:.0f} % of speakers; metadata "
          f"({md['attribute']}) {100 * md['wer_gap']:.0f} % at {100 * md['bottom_share']:.0f} %; shuffled "
          f"{100 * ctl['wer_gap']:.0f} % at {100 * ctl['bottom_share']:.0f} % -> {args.json}")
    return 0


def _fairness_ewc(args: argparse.Namespace) -> int:
    from framegate.benchmarks.fairness_ewc import run

    if any(lam <= 0 for lam in args.lambdas):
        raise FramegateError(f"--lambdas must be > 0 (plain fine-tuning, lambda 0, always runs), got {args.lambdas}")
    try:
        report = run(args.config, args.embedder, args.lambdas, args.work, args.json, worst=args.worst,
                     min_speakers=args.min_speakers, k=args.k, seed=args.seed, threads=args.threads)
    except ValueError as e:  # a recipe without init_from, too few dev voices for cohorts
        raise FramegateError(str(e)) from None
    for name, s in report["systems"].items():
        worst = s.get("vs_none", {}).get("worst", {})
        change = f", worst cohort {100 * worst['relative']:+.1f} % rel." if worst.get("relative") is not None else ""
        print(f"{name}: overall WER {100 * s['overall']:.2f} %, max cohort {100 * s['max']:.2f} %{change}")
    print(f"-> {args.json}")
    return 0


def _fairness_eer(args: argparse.Namespace) -> int:
    from framegate.benchmarks.speaker_eer import parse_named, run

    report = run(parse_named(args.embedder), args.manifest, args.json, threads=args.threads)
    for name, r in report["embedders"].items():
        gap = ("no accent gap (fewer than two groups with both kinds of trial)" if r["accent_gap"] is None else
               f"accent gap {100 * r['accent_gap']:.2f} points ({r['best_group']} best, {r['worst_group']} worst)")
        print(f"{name}: EER {100 * r['eer']:.2f} % overall, {gap}")
    print(f"-> {args.json}")
    return 0


def _export(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (args.model is None):
        raise FramegateError("export needs exactly one source: --checkpoint PATH (or, with --format sherpa-onnx "
                             "or --quantize, --model BUNDLE)")
    if (args.quantize is None) != (args.calibration is None):
        raise FramegateError("--quantize int8 and --calibration JSONL go together: the calibration audio fixes "
                             "the int8 encoder's input ranges")
    if args.model is not None:
        if args.format != "sherpa-onnx" and args.quantize is None:
            raise FramegateError("--model BUNDLE is a source only for --format sherpa-onnx or --quantize; a bundle "
                                 "is exported from --checkpoint")
        if args.chunk_frames is not None:
            raise FramegateError("--chunk-frames applies when exporting from --checkpoint; a bundle keeps "
                                 "the chunk it was exported with")
    elif not args.checkpoint.is_file():
        raise FramegateError(f"checkpoint '{args.checkpoint}': no such file")
    if args.calibration is not None and not args.calibration.is_file():
        raise FramegateError(f"--calibration '{args.calibration}': no such file")
    steps = [step for step, wanted in (("bundle", args.model is None), ("int8", args.quantize is not None),
                                       ("sherpa-onnx", args.format == "sherpa-onnx")) if wanted]
    with tempfile.TemporaryDirectory(prefix="framegate_export_") as scratch:
        bundle = args.model
        try:
            for step in steps:
                out = args.out if step == steps[-1] else Path(scratch) / step
                bundle = _export_step(step, args, bundle, out)
        except ValueError as e:  # refusals of the inputs (config, tokens, calibration) are user errors
            raise FramegateError(str(e)) from None
    print(bundle)
    return 0


def _export_step(step: str, args: argparse.Namespace, source: Path | None, out: Path) -> Path:
    """One stage of export: checkpoint -> bundle, bundle -> int8 bundle, bundle -> sherpa-onnx directory."""
    if step == "bundle":
        from framegate.export.onnx_export import export_bundle

        return export_bundle(args.checkpoint, out, tokens=args.tokens, model_card={"checkpoint": str(args.checkpoint)},
                             chunk_frames=args.chunk_frames)
    if step == "int8":
        from framegate.export.quantize import calibration_audio, quantize_bundle

        audio, source_name = calibration_audio(args.calibration, args.calibration_utterances)
        return quantize_bundle(source, out, audio, source_name)
    from framegate.export.sherpa_export import write_sherpa_dir

    return write_sherpa_dir(source, out)


def _lm_build(args: argparse.Namespace) -> int:
    from framegate.export.corpus.text import FORTUNE_DIR, training_text
    from framegate.export.feature_cache import read_manifest
    from framegate.export.token_lm import add_to_bundle

    for path, what in ((args.bpe, "--bpe"), (args.manifest, "--manifest")):
        if path is not None and not path.is_file():
            raise FramegateError(f"{what} '{path}': no such file")
    if args.manifest is not None:
        texts, source = [row["text"] for row in read_manifest(args.manifest)], str(args.manifest)
    elif not FORTUNE_DIR.is_dir():
        raise FramegateError(f"--fortunes: {FORTUNE_DIR} is missing (Debian's fortunes packages; ./setup.sh installs them)")
    else:
        texts, source = training_text(FORTUNE_DIR), f"{FORTUNE_DIR}, train split, every length"
    search = {"beam": args.beam, "lm_weight": args.lm_weight, "token_bonus": args.token_bonus}
    try:
        print(add_to_bundle(args.bundle, args.bpe, texts, source, args.order, search, args.arpa))
    except ValueError as e:
        raise FramegateError(str(e)) from None
    return 0


def _engine_arguments(p: argparse.ArgumentParser) -> None:
    """The options every verb that runs a Recognizer shares: bundle, threads, search."""
    p.add_argument("--model", type=Path, default=None, metavar="BUNDLE",
                   help="bundle directory (default: the bundle shipped with the engine)")
    p.add_argument("--threads", type=_positive_int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--beam", type=_positive_int, default=None,
                   help="modified beam search with this many hypotheses (default: the bundle's search; "
                        "1 without a language model is greedy)")
    p.add_argument("--lm-weight", type=_non_negative_float, default=None, metavar="W",
                   help="shallow-fusion weight of the bundle's language model (0: none; default: the bundle's)")


def _model_card(args: argparse.Namespace) -> int:
    from framegate.export.model_card import write_model_card

    print(write_model_card(args.bundle, args.corpus, args.checkpoint, args.wer, args.real_speech))
    return 0


def _bench_wer(args: argparse.Namespace) -> int:
    from framegate.benchmarks.wer import run

    report = run(args.model, args.manifest, args.json, threads=args.threads, limit=args.limit, beam=args.beam,
                 lm_weight=args.lm_weight)
    print(f"WER {100 * report['wer']:.2f} % ({report['search']['method']}, synthetic, {report['words']} words, 95 % CI "
          f"{100 * report['ci95'][0]:.2f}-{100 * report['ci95'][1]:.2f}), RTF {report['rtf']:.4f} -> {args.json}")
    return 0


def _bench_compare(args: argparse.Namespace) -> int:
    from framegate.benchmarks.compare import run

    report = run(args.a, args.b, args.json)
    if report["kind"] == "wer":
        d = report["difference"]
        print(f"WER {100 * report['wer']['a']:.2f} -> {100 * report['wer']['b']:.2f} % on {report['words']} words: "
              f"B - A {100 * d['difference']:+.2f} points (95 % CI {100 * d['ci95'][0]:+.2f} to "
              f"{100 * d['ci95'][1]:+.2f}) -> {args.json}")
        return 0
    for search in ("greedy", "bundle_search"):
        fig = report.get(search, {}).get("last_word_ms")
        if fig:
            d = fig["p95_difference"]
            print(f"{search}: last word p95 {fig['a']['p95']:.0f} -> {fig['b']['p95']:.0f} ms on {fig['utterances']} "
                  f"utterances (B - A 95 % CI {d['ci95'][0]:+.0f} to {d['ci95'][1]:+.0f}; mean "
                  f"{fig['mean_difference']['difference']:+.1f} ms)")
    print(f"-> {args.json}")
    return 0


def _bench_soak(args: argparse.Namespace) -> int:
    from framegate.benchmarks.soak import run

    report = run(args.model, args.minutes, args.json, seed=args.seed, manifest=args.manifest,
                 cli_file_minutes=args.cli_file_minutes)
    rss, drift, seg = report["rss_mb"], report["drift"], report["segments"]
    print(f"soak {args.minutes:g} min: RSS +{rss['growth_after_warmup']:.2f} MB after warm-up, per-chunk drift "
          f"x{drift['ratio_end_over_start']:.3f}, segments identical {seg['identical_when_replayed_alone']}/"
          f"{seg['endpointed']} -> {args.json}")
    return 0


def _bench_real_speech(args: argparse.Namespace) -> int:
    from framegate.benchmarks.real_speech import run

    report = run(args.model, args.json)
    for name, r in report["engines"].items():
        print(f"{name}: WER {100 * r['wer']:.1f} % (human speech, {report['words']} words), RTF {r['rtf']:.4f}")
    return 0


def _bench_latency(args: argparse.Namespace) -> int:
    from framegate.benchmarks.latency import LatencyOptions, run

    if args.manifest is None and args.wav_list is None:
        raise FramegateError("bench latency needs audio: --manifest JSONL (e.g. the test split) and/or --wav-list FILE")
    options = LatencyOptions(threads=tuple(args.threads), block_ms=args.block_ms, tail_s=args.tail_s,
                             real_time_utts=args.real_time_utts, rounds=args.rounds, limit=args.limit,
                             peers=None if args.peers is None else tuple(p for p in args.peers if p != "none"))
    report = run(args.model, args.json, manifest=args.manifest, wav_list=args.wav_list,
                 checkpoint=args.checkpoint, options=options)
    print(f"{_latency_summary(report, options.threads[0])} -> {args.json}")
    return 0


def _latency_summary(report: dict, threads: int) -> str:
    """One line of the latency report; a figure the bundle's type has no peer for reads n/a."""
    def ratio(key: str) -> str:
        return "n/a" if report[key] is None else f"x{report[key]:.2f}"

    last_word = report["last_word_ms"]["p95"]
    return (f"RTF {report['rtf']:.4f} ({threads} thread(s)), chunk p99 {report['chunk_ms']['p99']:.2f} ms, "
            f"last word p95 {'n/a' if last_word is None else f'{last_word:.0f}'} ms, "
            f"peak RSS {report['peak_rss_mb']:.0f} MB, overhead vs raw ONNX Runtime {ratio('engine_overhead')}, "
            f"vs sherpa-onnx {ratio('vs_sherpa_onnx')}")


def _bench_savings(args: argparse.Namespace) -> int:
    from framegate.benchmarks.savings import run

    report = run(args.model, args.manifest, args.json, compare=args.compare, dense=args.dense,
                 thresholds=tuple(args.thresholds), limit=args.limit, silence_s=args.silence_s,
                 noise_s=args.noise_s, rounds=args.rounds)
    for p in report["points"]:
        print(f"{p['name']}: WER {100 * p['wer']:.2f} % (dense {100 * p['wer_dense']:.2f} %), MACs "
              f"{100 * p['mac_fraction']:.0f} %, time x{p['time_ratio_vs_dense']:.2f} vs dense C++, "
              f"x{p['time_ratio_vs_ort_dense']:.2f} vs ORT; silence {100 * p['silence_mac_fraction']:.0f} %, "
              f"noise {100 * p['noise_mac_fraction']:.0f} %")
    print(f"-> {args.json}")
    return 0


def _bench_conversations(args: argparse.Namespace) -> int:
    from framegate.benchmarks.conversations import run

    report = run(args.model, args.manifest, args.json, single=args.single, threads=args.threads, limit=args.limit,
                 embedding=args.embedding, beam=args.beam)
    for b in report["buckets"]:
        base = ", ".join(f"{name} {100 * v['cpwer']:.1f} %" for name, v in b["baselines"].items())
        print(f"overlap {b['overlap']}: cpWER {100 * b['cpwer']:.1f} % ({base}), turns "
              f"{100 * b['turn_count_accuracy']:.0f} %, eot p90 {b['eot_delay_ms']['p90']} ms")
    print(f"RTF {report['rtf']:.4f} -> {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framegate", description="On-device streaming speech recognition.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("transcribe", help="transcribe audio files (streamed block by block)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _engine_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per file (JSON Lines)")
    p.set_defaults(run=_transcribe)

    p = verbs.add_parser("mic", help="live transcription from a microphone (or a file at real-time pace)")
    _engine_arguments(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--device", default=None, metavar="ID",
                        help="input device index or part of its name (default: the system's default input)")
    source.add_argument("--from-file", type=Path, default=None, metavar="FILE",
                        help="play FILE through the same pipeline at real-time pace instead of a microphone")
    source.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    p.add_argument("--save", type=Path, default=None, metavar="FILE",
                   help="write the captured audio to FILE (.wav) and its JSON transcript beside it")
    p.add_argument("--compute-threshold", type=float, default=None, metavar="X",
                   help="arbitrator threshold of a gated bundle (a compute dial; dense bundles have none); "
                        "on a terminal, + and - (or ] and [) turn it live in steps of 0.05")
    p.set_defaults(run=_mic)

    p = verbs.add_parser("web", help="the live demo in a browser: a page on localhost streams the microphone")
    _engine_arguments(p)
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--compute-threshold", type=float, default=None, metavar="X",
                   help="arbitrator threshold of a gated bundle; the page's +/- buttons turn it live")
    p.set_defaults(run=_web)

    p = verbs.add_parser("corpus", help="offline synthetic corpus")
    corpus_verbs = p.add_subparsers(dest="corpus_verb", required=True, metavar="VERB")
    p = corpus_verbs.add_parser("build", help="synthesize a corpus deterministically")
    p.add_argument("--hours", type=_positive_float, required=True)
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--workers", type=_positive_int, default=2)
    p.add_argument("--test-words", type=_positive_int, default=5500, help="words in the test split at least")
    p.add_argument("--splits", nargs="+", choices=("train", "dev", "test"), default=["train", "dev", "test"],
                   help="splits to synthesize (all are planned, so each is the same as in a full build)")
    p.set_defaults(run=_corpus_build)
    p = corpus_verbs.add_parser("merge", help="one training corpus from several builds (no re-synthesis)")
    p.add_argument("corpora", type=Path, nargs="+", metavar="DIR",
                   help="corpus builds; train joins all of them, dev and test are the first one's")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.set_defaults(run=_corpus_merge)
    p = corpus_verbs.add_parser("conversations", help="two-party conversations simulated from a corpus manifest")
    p.add_argument("--from", dest="from_manifest", type=Path, required=True, metavar="MANIFEST",
                   help="a corpus split (e.g. data/corpus/test.jsonl); conversations stay inside each split")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--count", type=_positive_int, default=100, help="conversations per split")
    p.set_defaults(run=_corpus_conversations)

    p = verbs.add_parser("train", help="train a model from a recipe")
    p.add_argument("--config", type=Path, required=True, metavar="FILE")
    p.add_argument("--finetune-on", type=Path, default=None, metavar="COHORT_MANIFEST",
                   help="fine-tune the recipe's init_from on this manifest only, then export work_dir/bundle")
    p.add_argument("--ewc-lambda", type=float, default=None, metavar="L",
                   help="with --finetune-on: elastic weight consolidation strength (default 0: plain fine-tuning)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads, instead of the recipe's (two runs side by side on 2 cores: 1 each)")
    p.set_defaults(run=_train)

    p = verbs.add_parser("train-speaker", help="train the speaker-embedding network; writes work_dir/bundle")
    p.add_argument("--config", type=Path, required=True, metavar="FILE")
    p.set_defaults(run=_train_speaker)

    p = verbs.add_parser("fairness", help="which voices the model serves worst: each writes JSON and a PNG")
    fairness_verbs = p.add_subparsers(dest="fairness_verb", required=True, metavar="VERB")
    p = fairness_verbs.add_parser("cohorts", help="k-means cohorts of speaker embeddings ranked by WER, "
                                                  "against metadata and shuffled baselines")
    p.add_argument("--model", type=Path, default=None, metavar="BUNDLE",
                   help="recognition bundle (default: the bundle shipped with the engine)")
    p.add_argument("--embedder", type=Path, default=None, metavar="EMB_BUNDLE",
                   help="speaker-embedding bundle (default: the one shipped with the engine)")
    p.add_argument("--manifest", type=Path, required=True, metavar="JSONL", help="a corpus split, e.g. test.jsonl")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.add_argument("--k", type=_positive_int, default=None, help="cohorts (default: best silhouette)")
    p.add_argument("--max-k", type=_positive_int, default=10, help="largest k the silhouette rule tries")
    p.add_argument("--repeats", type=_positive_int, default=100, help="shuffled-control clusterings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=1)
    p.set_defaults(run=_fairness_cohorts)
    p = fairness_verbs.add_parser("ewc", help="the EWC protocol: dev cohorts, fine-tune for the worst, judge on test")
    p.add_argument("--config", type=Path, required=True, metavar="RECIPE",
                   help="a fine-tuning recipe (its init_from is the base model, corpus_dir the corpus)")
    p.add_argument("--embedder", type=Path, default=None, metavar="EMB_BUNDLE")
    p.add_argument("--lambdas", type=float, nargs="+", required=True, metavar="L", help="EWC strengths (> 0)")
    p.add_argument("--work", type=Path, required=True, metavar="DIR", help="fine-tuning runs and bundles")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.add_argument("--worst", type=_positive_int, default=1, help="worst cohorts to fine-tune for")
    p.add_argument("--min-speakers", type=_positive_int, default=3, help="fewest training voices to fine-tune on")
    p.add_argument("--k", type=_positive_int, default=None, help="dev cohorts (default: best silhouette)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=1)
    p.set_defaults(run=_fairness_ewc)
    p = fairness_verbs.add_parser("eer", help="speaker-verification EER overall and per accent group")
    p.add_argument("--embedder", nargs="+", required=True, metavar="[NAME=]EMB_BUNDLE",
                   help="one or more embedding bundles; the first is the reference the others are compared to")
    p.add_argument("--manifest", type=Path, required=True, metavar="JSONL", help="held-out voices, e.g. test.jsonl")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.add_argument("--threads", type=_positive_int, default=1)
    p.set_defaults(run=_fairness_eer)

    p = verbs.add_parser("export", help="export a checkpoint to a bundle, an int8 bundle or a sherpa-onnx directory")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="PATH")
    p.add_argument("--model", type=Path, default=None, metavar="BUNDLE",
                   help="with --format sherpa-onnx or --quantize: start from this bundle instead of a checkpoint")
    p.add_argument("--format", choices=("bundle", "sherpa-onnx"), default="bundle",
                   help="bundle (default) or a directory sherpa-onnx's OnlineRecognizer.from_transducer loads")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--tokens", type=Path, default=None, metavar="PATH",
                   help="tokens.txt (default: the one beside the checkpoint)")
    p.add_argument("--chunk-frames", type=int, default=None, metavar="N",
                   help="stream in chunks of N fbank frames (a multiple of 4) instead of the checkpoint's: less "
                        "algorithmic latency, more encoder calls per second (LSTM transducer, ConvRNN-T)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="int8 LSTM weights (LSTM transducer): a quarter of the encoder's weight bytes, streamed "
                        "output still equal to the whole-utterance pass")
    p.add_argument("--calibration", type=Path, default=None, metavar="JSONL",
                   help="with --quantize: a manifest of audio that fixes the encoder's input ranges (dev.jsonl)")
    p.add_argument("--calibration-utterances", type=_positive_int, default=200, metavar="N",
                   help="use the manifest's first N utterances")
    p.set_defaults(run=_export)

    p = verbs.add_parser("lm", help="language models for a bundle's beam search")
    lm_verbs = p.add_subparsers(dest="lm_verb", required=True, metavar="VERB")
    p = lm_verbs.add_parser("build", help="estimate a token n-gram on training text and add it to a bundle")
    p.add_argument("--bundle", type=Path, required=True, metavar="BUNDLE")
    p.add_argument("--bpe", type=Path, required=True, metavar="MODEL",
                   help="the sentencepiece model the bundle was trained with (bpe.model beside its checkpoint)")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--manifest", type=Path, default=None, metavar="JSONL",
                      help="training transcripts (never the test split's)")
    text.add_argument("--fortunes", action="store_true",
                      help="every sentence of Debian's fortunes in the corpus's train split, of any length "
                           "(the pool a corpus's transcripts are drawn from; dev and test sentences never)")
    p.add_argument("--order", type=_positive_int, default=5, help="n-gram order in pieces")
    p.add_argument("--beam", type=_positive_int, default=8, help="the bundle's default beam")
    p.add_argument("--lm-weight", type=_non_negative_float, default=0.4, metavar="W",
                   help="the bundle's default shallow-fusion weight")
    p.add_argument("--token-bonus", type=float, default=1.0, metavar="B",
                   help="score added per emitted piece (offsets the LM's preference for fewer pieces)")
    p.add_argument("--arpa", type=Path, default=None, metavar="PATH", help="also write the LM as ARPA text")
    p.set_defaults(run=_lm_build)

    p = verbs.add_parser("model-card", help="write MODEL_CARD.md into a bundle from measured reports")
    p.add_argument("--bundle", type=Path, required=True, metavar="BUNDLE")
    p.add_argument("--corpus", type=Path, required=True, metavar="DIR", help="the training corpus (summary.json)")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="the checkpoint exported")
    p.add_argument("--wer", type=Path, required=True, metavar="JSON", help="a 'bench wer' report on the test split")
    p.add_argument("--real-speech", type=Path, default=None, metavar="JSON", help="a 'bench real-speech' report")
    p.set_defaults(run=_model_card)

    p = verbs.add_parser("bench", help="benchmarks: each writes a JSON report and a PNG beside it")
    bench_verbs = p.add_subparsers(dest="bench_verb", required=True, metavar="VERB")
    p = bench_verbs.add_parser("wer", help="WER per held-out voice family and real-time factor")
    _engine_arguments(p)
    p.add_argument("--manifest", type=Path, required=True, metavar="JSONL", help="a corpus split, e.g. test.jsonl")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N utterances")
    p.set_defaults(run=_bench_wer)
    p = bench_verbs.add_parser("compare", help="two runs of 'bench wer' or 'bench latency' on the same audio, "
                                               "paired per utterance with bootstrap intervals (B - A)")
    p.add_argument("a", type=Path, metavar="A_JSON", help="the reference run's report (e.g. the shipped bundle)")
    p.add_argument("b", type=Path, metavar="B_JSON", help="the candidate run's report")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.set_defaults(run=_bench_compare)
    p = bench_verbs.add_parser("real-speech", help="alsa-utils' recorded prompts, framegate beside PocketSphinx")
    p.add_argument("--model", type=Path, default=None, metavar="BUNDLE")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.set_defaults(run=_bench_real_speech)
    p = bench_verbs.add_parser("soak", help="one long stream: RSS growth, per-chunk drift, segment equality")
    p.add_argument("--model", type=Path, default=None, metavar="BUNDLE")
    p.add_argument("--minutes", type=_positive_float, default=60.0, help="stream length")
    p.add_argument("--manifest", type=Path, default=None, metavar="JSONL",
                   help="utterances to join with pauses (default: synthetic speech-like audio)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cli-file-minutes", type=float, default=120.0, metavar="MIN",
                   help="also run 'framegate transcribe' on a file this long (0: skip)")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.set_defaults(run=_bench_soak)
    p = bench_verbs.add_parser("latency", help="RTF, per-chunk compute, latency, memory; peers on the same audio")
    p.add_argument("--model", type=Path, default=None, metavar="BUNDLE")
    p.add_argument("--manifest", type=Path, default=None, metavar="JSONL", help="a corpus split, e.g. test.jsonl")
    p.add_argument("--wav-list", type=Path, default=None, metavar="FILE", help="audio files, one path a line")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="PATH",
                   help="the checkpoint the bundle came from: adds the PyTorch eager peer")
    p.add_argument("--threads", type=_positive_int, nargs="+", default=[1, 2], metavar="N",
                   help="framegate's ONNX Runtime threads, one run each (the first is the headline)")
    p.add_argument("--block-ms", type=_positive_float, default=20.0, help="live-source block at real-time pace")
    p.add_argument("--tail-s", type=float, default=2.0, help="silence after each utterance at real-time pace")
    p.add_argument("--real-time-utts", type=int, default=2,
                   help="utterances also run at wall-clock pace to check the virtual clock")
    p.add_argument("--rounds", type=_positive_int, default=3,
                   help="throughput runs of every engine in turn; each utterance's fastest counts")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N utterances")
    p.add_argument("--peers", nargs="+", default=None, choices=[*PEERS, "none"], metavar="NAME",
                   help=f"peers to run ({', '.join(PEERS)}; 'none': framegate alone); default: every one "
                        f"that takes the bundle")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.set_defaults(run=_bench_latency)
    p = bench_verbs.add_parser("savings", help="gated encoders: WER, MACs and time against the dense reference")
    p.add_argument("--model", type=Path, required=True, metavar="BUNDLE", help="a gated_transformer bundle")
    p.add_argument("--compare", type=Path, nargs="*", default=[], metavar="BUNDLE",
                   help="more operating points: other lambdas, the sliding-window baseline, the dense model")
    p.add_argument("--dense", type=Path, default=None, metavar="BUNDLE",
                   help="the dense reference (default: the --compare bundle without arbitrators, longest context)")
    p.add_argument("--manifest", type=Path, required=True, metavar="JSONL", help="a corpus split, e.g. test.jsonl")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9], metavar="T")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N utterances with text")
    p.add_argument("--silence-s", type=_positive_float, default=60.0, help="seconds of near-silence")
    p.add_argument("--noise-s", type=_positive_float, default=60.0, help="seconds of background noise")
    p.add_argument("--rounds", type=_positive_int, default=2, help="timed runs per utterance; the fastest counts")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.set_defaults(run=_bench_savings)
    p = bench_verbs.add_parser("conversations", aliases=["multitalker"],
                               help="two-speaker conversations: cpWER, turn counting, <sot>/<eot> delay, baselines")
    p.add_argument("--model", type=Path, required=True, metavar="BUNDLE", help="a two-channel 'sts' bundle")
    p.add_argument("--manifest", type=Path, required=True, metavar="JSONL",
                   help="conversations from 'framegate corpus conversations' (e.g. its test.jsonl)")
    p.add_argument("--single", type=Path, default=None, metavar="BUNDLE",
                   help="the single-speaker bundle of the baselines (default: the shipped default bundle)")
    p.add_argument("--embedding", type=Path, default=None, metavar="BUNDLE",
                   help="speaker-embedding bundle for the cascade's clustering (default: fbank statistics)")
    p.add_argument("--threads", type=_positive_int, default=1)
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N conversations")
    p.add_argument("--beam", type=_positive_int, default=None,
                   help="beam search with this many hypotheses on each STS channel (default: its own search)")
    p.add_argument("--json", type=Path, required=True, metavar="PATH")
    p.set_defaults(run=_bench_conversations)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (FramegateError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"framegate: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("framegate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
