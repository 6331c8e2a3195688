"""`framegate export --format sherpa-onnx`: a directory sherpa-onnx loads, with the bundle's own graphs."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnx
import pytest

from framegate.engine.cli import main
from framegate.engine.errors import BundleError
from framegate.engine.recognizer import Recognizer
from framegate.export.sherpa_export import SHERPA_FILES, write_sherpa_dir


def test_export_from_a_bundle_copies_the_graphs_byte_for_byte(tiny_bundle, tmp_path, capsys):
    assert main(["export", "--format", "sherpa-onnx", "--model", str(tiny_bundle), "--out", str(tmp_path / "s")]) == 0
    for name in SHERPA_FILES:
        assert (tmp_path / "s" / name).read_bytes() == (tiny_bundle / name).read_bytes()


def test_export_from_a_checkpoint_writes_only_what_sherpa_onnx_loads(tiny_checkpoint, tiny_bundle, tmp_path, capsys):
    assert main(["export", "--format", "sherpa-onnx", "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path / "s")]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(SHERPA_FILES)
    assert (tmp_path / "s" / "tokens.txt").read_bytes() == (tiny_bundle / "tokens.txt").read_bytes()


def test_a_bundle_is_not_a_source_for_the_bundle_format(tiny_bundle, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_bundle), "--out", str(tmp_path / "b")]) == 2
    assert "only for --format sherpa-onnx" in capsys.readouterr().err


def test_a_chunk_4_bundle_lays_out_with_its_window_metadata(tiny_bundle_chunk4, tmp_path, capsys):
    assert main(["export", "--format", "sherpa-onnx", "--model", str(tiny_bundle_chunk4),
                 "--out", str(tmp_path / "s")]) == 0
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "s" / "encoder.onnx")).metadata_props}
    assert (metadata["T"], metadata["decode_chunk_len"]) == ("7", "4")


@pytest.mark.parametrize("bundle", ["tiny_bundle", "tiny_bundle_chunk4", "tiny_bundle_int8"])
def test_sherpa_onnx_decodes_the_export_like_framegate(bundle, request, speechlike_16k, tmp_path):
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    bundle_dir = request.getfixturevalue(bundle)
    out = write_sherpa_dir(bundle_dir, tmp_path / "s")
    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(out / "tokens.txt"), encoder=str(out / "encoder.onnx"), decoder=str(out / "decoder.onnx"),
        joiner=str(out / "joiner.onnx"), num_threads=1)
    audio = np.concatenate([speechlike_16k, np.zeros(4000, dtype=np.float32)])
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, audio)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    theirs = [t.replace(" ", "\u2581") for t in recognizer.get_result_all(stream).tokens]
    ours = Recognizer(bundle_dir, endpoint=None).transcribe(audio, 16000).tokens
    assert len(theirs) > 5
    assert ours[:len(theirs)] == theirs  # equal up to the last partial window, which only framegate pads


def test_a_piece_with_whitespace_is_refused(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    lines = (bundle / "tokens.txt").read_text(encoding="utf-8").splitlines()
    lines[5] = "a\tb 5"
    (bundle / "tokens.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = json.loads((bundle / "bundle.json").read_text())
    data = (bundle / "tokens.txt").read_bytes()
    manifest["files"]["tokens.txt"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="whitespace"):
        write_sherpa_dir(bundle, tmp_path / "s")
