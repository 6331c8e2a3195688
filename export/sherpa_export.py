"""A bundle laid out for sherpa-onnx's online LSTM transducer (`framegate export --format sherpa-onnx`).

The bundle's graphs already follow sherpa-onnx's contract (DESIGN.md: encoder metadata
`model_type=lstm`, `T`, `decode_chunk_len`, ...; inputs and outputs by position; the
decoder accepts the -1 start context), and its tokens.txt is sherpa-onnx's `<piece> <id>`
format. What sherpa-onnx assumes without checking is checked here, so a bundle that would
load but decode differently is refused: blank is id 0 (sherpa-onnx hard-codes it), `<unk>`
(if present) is the only other non-emitting piece, and no piece holds whitespace (its
symbol table splits lines on it). The ONNX files are copied byte for byte: both engines
run identical weights. Nothing here imports torch; the benchmarks convert a bundle
without a checkpoint.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from framegate.engine.bundle import ONNX_FILES, Bundle
from framegate.engine.errors import BundleError

SHERPA_FILES = (*ONNX_FILES, "tokens.txt")
SHERPA_BLANK_ID = 0


def check_sherpa_compatible(bundle: Bundle) -> None:
    """Raise BundleError naming what sherpa-onnx would read differently from framegate."""
    if bundle.decoder.blank_id != SHERPA_BLANK_ID:
        raise BundleError(f"sherpa-onnx takes id {SHERPA_BLANK_ID} as blank, the bundle's blank_id is "
                          f"{bundle.decoder.blank_id}")
    for index, piece in enumerate(bundle.tokens):
        if any(ch.isspace() for ch in piece):
            raise BundleError(f"tokens.txt: piece {index} {piece!r} holds whitespace, which sherpa-onnx's "
                              f"symbol table cannot read")


def write_sherpa_dir(bundle_dir: Path, out_dir: Path) -> Path:
    """Validate the bundle at `bundle_dir` and copy what sherpa-onnx loads into `out_dir`.

    The result loads with `sherpa_onnx.OnlineRecognizer.from_transducer(tokens=out/tokens.txt,
    encoder=out/encoder.onnx, decoder=out/decoder.onnx, joiner=out/joiner.onnx)`.
    """
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    bundle = Bundle.load(bundle_dir)  # checksums, graphs and sherpa-onnx metadata checked here
    check_sherpa_compatible(bundle)
    if out_dir.resolve() == bundle_dir.resolve():
        raise BundleError(f"the sherpa-onnx directory must differ from the bundle ({out_dir})")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SHERPA_FILES:
        shutil.copyfile(bundle_dir / name, out_dir / name)
    return out_dir
