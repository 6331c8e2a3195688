"""`framegate`: the one command-line dispatcher.

Verbs: transcribe (device path), corpus build, train, export (torch side). Torch-side
modules are imported inside their verbs, so `framegate transcribe` never loads torch.
User errors (every FramegateError, OSError on paths the user named) print one line,
`framegate: error: ...`, and exit with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from framegate.engine.errors import FramegateError

EXIT_USER_ERROR = 2
BLOCK_SECONDS = 0.1  # file blocks per accept_waveform: what a live source would deliver


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _transcribe(args: argparse.Namespace) -> int:
    from framegate.engine.audio import read_audio_blocks
    from framegate.engine.recognizer import Recognizer

    recognizer = Recognizer(args.model, num_threads=args.threads)
    for path in args.files:
        started = time.perf_counter()
        sample_rate, blocks = read_audio_blocks(path, BLOCK_SECONDS)
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
            if len(result.segments) > 1:
                record["segments"] = [{"text": s.text, "start_s": round(s.start_s, 6), "end_s": round(s.end_s, 6)}
                                      for s in result.segments]
            print(json.dumps(record, ensure_ascii=False), flush=True)
        elif len(args.files) > 1:
            print(f"{path}\t{result.text}", flush=True)
        else:
            print(result.text, flush=True)
    return 0


def _corpus_build(args: argparse.Namespace) -> int:
    from framegate.export.corpus.build import build_corpus

    build_corpus(out_dir=args.out, hours=args.hours, seed=args.seed, workers=args.workers)
    return 0


def _train(args: argparse.Namespace) -> int:
    from framegate.export.train import run

    run(args.config)
    return 0


def _export(args: argparse.Namespace) -> int:
    from framegate.export.onnx_export import export_bundle

    if not args.checkpoint.is_file():
        raise FramegateError(f"checkpoint '{args.checkpoint}': no such file")
    try:
        out = export_bundle(args.checkpoint, args.out, tokens=args.tokens,
                            model_card={"checkpoint": str(args.checkpoint)})
    except ValueError as e:  # export's refusals of the inputs (config, tokens) are user errors
        raise FramegateError(str(e)) from None
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framegate", description="On-device streaming speech recognition.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("transcribe", help="transcribe audio files (streamed block by block)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--model", type=Path, default=None, metavar="BUNDLE",
                   help="bundle directory (default: the bundle shipped with the engine)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file (JSON Lines)")
    p.add_argument("--threads", type=_positive_int, default=1, help="ONNX Runtime intra-op threads")
    p.set_defaults(run=_transcribe)

    p = verbs.add_parser("corpus", help="offline synthetic corpus")
    corpus_verbs = p.add_subparsers(dest="corpus_verb", required=True, metavar="VERB")
    p = corpus_verbs.add_parser("build", help="synthesize a corpus deterministically")
    p.add_argument("--hours", type=_positive_float, required=True)
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--workers", type=_positive_int, default=1)
    p.set_defaults(run=_corpus_build)

    p = verbs.add_parser("train", help="train a model from a recipe")
    p.add_argument("--config", type=Path, required=True, metavar="FILE")
    p.set_defaults(run=_train)

    p = verbs.add_parser("export", help="export a checkpoint to a bundle")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="PATH")
    p.add_argument("--out", type=Path, required=True, metavar="BUNDLE")
    p.add_argument("--tokens", type=Path, default=None, metavar="PATH",
                   help="tokens.txt (default: the one beside the checkpoint)")
    p.set_defaults(run=_export)
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


if __name__ == "__main__":
    sys.exit(main())
