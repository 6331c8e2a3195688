"""Speaker embeddings on the device path: one vector per utterance, ONNX Runtime only (no torch).

`SpeakerEmbedder` loads an embedding bundle (`embedding.onnx` + `bundle.json`, written by
`framegate.export.speaker_export`) with the same standards as a recognition bundle: format
version, model type, sample rate, feature config, every file's size and SHA-256, the graph's
inputs, outputs and metadata against bundle.json; anything wrong is a `BundleError` naming
it. `embed` computes the engine's fbank of the whole utterance and returns the unit-length
embedding, so cosine similarity is a dot product and a speaker's embedding is the
normalized mean of its utterances' (`speaker_embedding`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from framegate.engine.audio import canonical_16k, read_audio
from framegate.engine.bundle import (SUPPORTED_FORMAT_VERSION, Bundle, _check_io, _check_metadata,
                                     _manifest_object, _section, _session, _verified_file)
from framegate.engine.errors import AudioInputError, BundleError
from framegate.engine.features import SAMPLE_RATE, FbankConfig, compute_fbank

MODEL_TYPE = "speaker_embedding"
GRAPH = "embedding.onnx"
DEFAULT_EMBEDDER = Path(__file__).resolve().parent / "assets" / "default_speaker_embedding"


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


class SpeakerEmbedder:
    """A validated embedding bundle and its ONNX Runtime session (stateless; share freely).

    bundle_path: an embedding bundle directory; None means the one shipped with the engine.
    """

    def __init__(self, bundle_path: str | Path | None = None, num_threads: int = 1) -> None:
        if bundle_path is None:
            if not DEFAULT_EMBEDDER.is_dir():
                raise BundleError(f"no default speaker-embedding bundle is installed ({DEFAULT_EMBEDDER} does not "
                                  f"exist); pass one (--embedder BUNDLE), e.g. the bundle/ that "
                                  f"'framegate train-speaker --config FILE' writes")
            bundle_path = DEFAULT_EMBEDDER
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        self.path = Path(bundle_path)
        if not self.path.is_dir():
            raise BundleError(f"embedding bundle '{self.path}': no such directory")
        manifest = self._read_manifest(self.path)
        self.features: FbankConfig = Bundle._features(manifest)
        dim = _section(manifest, "embedding").get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise BundleError(f"bundle.json: 'embedding.dim' must be a positive int, found {dim!r}")
        self.dim = dim
        self.model_card = manifest.get("model_card", {})
        self.session = _session(GRAPH, self._verified_graph(self.path, manifest), num_threads)
        _check_io(GRAPH, "input", self.session.get_inputs(), [("x", [None, None, self.features.num_bins])])
        _check_io(GRAPH, "output", self.session.get_outputs(), [("embedding", [None, dim])])
        _check_metadata(GRAPH, self.session, {"model_type": MODEL_TYPE, "embedding_dim": dim,
                                              "num_bins": self.features.num_bins})

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        manifest = _manifest_object(path, "embedding bundle")
        if manifest.get("format_version") != SUPPORTED_FORMAT_VERSION:
            raise BundleError(f"bundle.json has format_version {manifest.get('format_version')!r}; this engine "
                              f"supports version {SUPPORTED_FORMAT_VERSION}")
        if manifest.get("model_type") != MODEL_TYPE:
            raise BundleError(f"bundle.json: model_type {manifest.get('model_type')!r} is not a speaker-embedding "
                              f"bundle ({MODEL_TYPE!r})")
        if manifest.get("sample_rate") != SAMPLE_RATE:
            raise BundleError(f"bundle.json: sample_rate {manifest.get('sample_rate')!r}; the engine's features "
                              f"run at {SAMPLE_RATE}")
        return manifest

    @staticmethod
    def _verified_graph(path: Path, manifest: dict) -> bytes:
        return _verified_file(path, GRAPH, _section(manifest, "files").get(GRAPH), "embedding bundle")

    def embed_features(self, frames: np.ndarray) -> np.ndarray:
        """The raw (not normalized) embedding of fbank frames (T, num_bins), T >= 1."""
        x = np.ascontiguousarray(frames, dtype=np.float32)[None]
        return self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Unit-length embedding (dim,) of one utterance at any sample rate."""
        samples_16k = canonical_16k(samples, sample_rate)
        frames = compute_fbank(samples_16k, self.features)
        if not len(frames):
            raise AudioInputError(f"speaker embedding: {len(samples_16k)} samples give no fbank frame")
        return _unit(self.embed_features(frames))

    def embed_file(self, path: str | Path) -> np.ndarray:
        samples, rate = read_audio(path)
        return self.embed(samples, rate)


def speaker_embedding(utterance_embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """A voice's embedding: the normalized mean of its utterances' unit embeddings."""
    if not len(utterance_embeddings):
        raise ValueError("a speaker embedding needs at least one utterance")
    return _unit(np.mean(np.stack(utterance_embeddings), axis=0))
