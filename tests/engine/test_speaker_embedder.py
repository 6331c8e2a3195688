"""Speaker embeddings on the device path: no torch, unit vectors, bundles checked like recognition bundles."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framegate.engine.errors import AudioInputError, BundleError
from framegate.engine.speaker_embedding import SpeakerEmbedder, speaker_embedding


def test_engine_embedding_needs_no_torch(tiny_embedder):
    code = ("import sys, numpy as np\n"
            "from framegate.engine.speaker_embedding import SpeakerEmbedder\n"
            f"e = SpeakerEmbedder({str(tiny_embedder)!r}).embed(np.sin(np.arange(8000) / 9.0), 16000)\n"
            "print(e.shape[0], 'torch' in sys.modules, 'sklearn' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.split() == ["8", "False", "False"]


def test_embedding_is_unit_length_and_resampled_input_agrees(tiny_embedder, speechlike_16k):
    embedder = SpeakerEmbedder(tiny_embedder)
    at_16k = embedder.embed(speechlike_16k, 16000)
    assert np.linalg.norm(at_16k) == pytest.approx(1.0, abs=1e-5)
    import soxr

    at_8k = embedder.embed(soxr.resample(speechlike_16k, 16000, 8000), 8000)
    assert float(at_16k @ at_8k) > 0.9  # same voice, band-limited: still close


def test_speaker_embedding_is_the_normalized_mean():
    e = speaker_embedding([np.array([1.0, 0.0]), np.array([0.0, 1.0])])
    np.testing.assert_allclose(e, [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)


def test_audio_too_short_for_a_frame_is_refused(tiny_embedder):
    with pytest.raises(AudioInputError, match="no fbank frame"):
        SpeakerEmbedder(tiny_embedder).embed(np.zeros(10, dtype=np.float32), 16000)


def _damaged(tiny_embedder: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "emb"
    shutil.copytree(tiny_embedder, copy)
    edit(copy)
    return copy


def _set(key: str, value):
    def edit(path: Path) -> None:
        manifest = json.loads((path / "bundle.json").read_text())
        section, _, field = key.rpartition(".")
        (manifest[section] if section else manifest)[field] = value
        (path / "bundle.json").write_text(json.dumps(manifest))
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda p: (p / "embedding.onnx").write_bytes((p / "embedding.onnx").read_bytes()[:-10]), "truncated"),
    (lambda p: (p / "embedding.onnx").unlink(), "embedding.onnx is missing"),
    (lambda p: (p / "bundle.json").write_text("{"), "not valid JSON"),
    (_set("model_type", "lstm_transducer"), "not a speaker-embedding bundle"),
    (_set("format_version", 2), "format_version 2"),
    (_set("embedding.dim", 9), "dim 1 = 8, but bundle.json implies 9"),
    (_set("features.num_bins", 40), "dim 2 = 80, but bundle.json implies 40"),
])
def test_damaged_bundle_is_refused_with_a_reason(tiny_embedder, tmp_path, edit, message):
    with pytest.raises(BundleError, match=message):
        SpeakerEmbedder(_damaged(tiny_embedder, tmp_path, edit))


def test_checksum_mismatch_is_refused(tiny_embedder, tmp_path):
    def flip(path: Path) -> None:
        data = bytearray((path / "embedding.onnx").read_bytes())
        data[-1] ^= 0xFF
        (path / "embedding.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        SpeakerEmbedder(_damaged(tiny_embedder, tmp_path, flip))


def test_shipped_embedder_is_the_default_and_embeds_any_audio_form_alike():
    import soundfile as sf
    import soxr

    embedder = SpeakerEmbedder()  # engine/assets/default_speaker_embedding
    assert embedder.model_card["adversarial_reweighting"] is False and embedder.model_card["step"] > 0
    example = Path(__file__).resolve().parents[2] / "engine" / "assets" / "example.wav"
    samples, rate = sf.read(example, dtype="float32")
    reference = embedder.embed(samples, rate)
    assert np.linalg.norm(reference) == pytest.approx(1.0, abs=1e-5)
    stereo_44k = np.repeat(soxr.resample(samples, rate, 44100)[:, None], 2, axis=1)
    as_int16 = np.round(np.clip(stereo_44k, -1, 1) * 32767).astype(np.int16)
    assert float(reference @ embedder.embed(as_int16, 44100)) > 0.95
