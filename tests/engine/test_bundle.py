"""A bundle is checked end to end at load time; every refusal names its problem."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from framegate.engine.bundle import Bundle
from framegate.engine.errors import BundleError
from framegate.engine.recognizer import Recognizer


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def edit_manifest(bundle: Path, edit) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    edit(manifest)
    (bundle / "bundle.json").write_text(json.dumps(manifest))


def refresh_checksum(bundle: Path, name: str) -> None:
    """Make bundle.json agree with a file we damaged on purpose, to reach the later checks."""
    data = (bundle / name).read_bytes()
    edit_manifest(bundle, lambda m: m["files"].__setitem__(
        name, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def test_valid_bundle_loads_with_its_specs(tiny_bundle):
    bundle = Bundle.load(tiny_bundle, num_threads=2)
    assert bundle.encoder.window_frames == bundle.encoder.chunk_frames + 3
    assert len(bundle.tokens) == bundle.decoder.vocab_size and bundle.tokens[0] == "<blk>"
    assert bundle.unk_id == 1
    assert bundle.model_card["weights"] == "random"


def test_missing_directory(tmp_path):
    with pytest.raises(BundleError, match="no such directory"):
        Bundle.load(tmp_path / "nope")


@pytest.mark.parametrize("name", ["bundle.json", "joiner.onnx", "tokens.txt"])
def test_missing_file_is_named(bundle_copy, name):
    (bundle_copy / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        Bundle.load(bundle_copy)


def test_manifest_that_is_not_json(bundle_copy):
    (bundle_copy / "bundle.json").write_text("{format_version: 1")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(bundle_copy)


def test_wrong_format_version_says_found_and_supported(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.__setitem__("format_version", 2))
    with pytest.raises(BundleError, match="format_version 2; this engine supports version 1"):
        Bundle.load(bundle_copy)


def test_absent_format_version(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.pop("format_version"))
    with pytest.raises(BundleError, match="no format_version; this engine supports version 1"):
        Bundle.load(bundle_copy)


def test_unknown_model_type(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.__setitem__("model_type", "conformer"))
    with pytest.raises(BundleError, match="unknown model_type 'conformer'"):
        Bundle.load(bundle_copy)


def test_edited_bytes_fail_the_checksum(bundle_copy):
    path = bundle_copy / "encoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="encoder.onnx: checksum mismatch"):
        Bundle.load(bundle_copy)


def test_truncated_onnx_is_refused_by_size(bundle_copy):
    path = bundle_copy / "decoder.onnx"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match="decoder.onnx: 100 bytes.*truncated"):
        Bundle.load(bundle_copy)


def test_corrupt_onnx_with_matching_checksum_names_the_file(bundle_copy):
    path = bundle_copy / "joiner.onnx"
    path.write_bytes(path.read_bytes()[:-40])
    refresh_checksum(bundle_copy, "joiner.onnx")
    with pytest.raises(BundleError, match="joiner.onnx: ONNX Runtime cannot load it"):
        Bundle.load(bundle_copy)


def test_manifest_disagreeing_with_graph_metadata(bundle_copy):
    edit_manifest(bundle_copy, lambda m: (m["encoder"].__setitem__("window_frames", 15),
                                          m["encoder"].__setitem__("lookahead_frames", 7)))
    with pytest.raises(BundleError, match="encoder.onnx: metadata T=11 disagrees with bundle.json \\(15\\)"):
        Bundle.load(bundle_copy)


def test_manifest_disagreeing_with_graph_shapes(bundle_copy):
    def widen(m):
        m["encoder"]["d_model"] = 17
        m["states"][0]["shape"][2] = 17
    edit_manifest(bundle_copy, widen)
    with pytest.raises(BundleError, match="encoder.onnx: input 'h' \\(h\\) has dim 2 = 16, but bundle.json implies 17"):
        Bundle.load(bundle_copy)


def test_state_shapes_disagreeing_with_encoder_section(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m["states"][1]["shape"].__setitem__(2, 99))
    with pytest.raises(BundleError, match="'states'"):
        Bundle.load(bundle_copy)


def test_tokens_disagreeing_with_vocab_size(bundle_copy):
    path = bundle_copy / "tokens.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    refresh_checksum(bundle_copy, "tokens.txt")
    with pytest.raises(BundleError, match="tokens.txt has 29 tokens but bundle.json's decoder.vocab_size is 30"):
        Bundle.load(bundle_copy)


def test_vocab_size_disagreeing_with_decoder_graph(bundle_copy):
    path = bundle_copy / "tokens.txt"
    path.write_text(path.read_text() + "extra 30\n")
    refresh_checksum(bundle_copy, "tokens.txt")
    edit_manifest(bundle_copy, lambda m: m["decoder"].__setitem__("vocab_size", 31))
    with pytest.raises(BundleError, match="decoder.onnx: metadata vocab_size=30 disagrees"):
        Bundle.load(bundle_copy)


def test_missing_manifest_field_is_named(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m["encoder"].pop("pad_value"))
    with pytest.raises(BundleError, match="'encoder.pad_value' is missing"):
        Bundle.load(bundle_copy)


def test_missing_default_bundle_tells_how_to_get_one(tmp_path, monkeypatch):
    import framegate.engine.recognizer as recognizer_module

    monkeypatch.setattr(recognizer_module, "DEFAULT_BUNDLE", tmp_path / "not-installed")
    with pytest.raises(BundleError, match="framegate export --checkpoint"):
        Recognizer()
