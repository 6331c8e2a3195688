"""Export a trained speaker-embedding checkpoint to an embedding bundle the engine loads.

An embedding bundle is a directory: `embedding.onnx` (x (N, T, num_bins) -> embedding
(N, dim), batch and time dynamic) and `bundle.json` (format version, model_type
"speaker_embedding", sample rate, feature config, embedding size, checksums, model card).
`framegate.engine.speaker_embedding.SpeakerEmbedder` checks all of it before use.
"""
from __future__ import annotations

from pathlib import Path

import torch

from framegate.engine.features import SAMPLE_RATE
from framegate.export.bundle_writer import FORMAT_VERSION, export_graph, finish_graph, model_features, write_manifest
from framegate.export.models.speaker_embedding import SpeakerEmbedding, SpeakerEmbeddingConfig

MODEL_TYPE = "speaker_embedding"
GRAPH = "embedding.onnx"


def load_embedding_model(checkpoint: Path) -> SpeakerEmbedding:
    """The eval-mode embedding network of a weights-only speaker checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{checkpoint}: model_type {state.get('model_type')!r} is not {MODEL_TYPE!r}")
    model = SpeakerEmbedding(SpeakerEmbeddingConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


@torch.no_grad()
def export_embedding_bundle(checkpoint: Path, out_dir: Path, model_card: dict | None = None) -> Path:
    """Write the embedding bundle of `checkpoint` into `out_dir` and return `out_dir`."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    model = load_embedding_model(checkpoint)
    cfg = model.cfg
    features = model_features(cfg.num_bins)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_graph(model, (torch.zeros(1, 50, cfg.num_bins),), out_dir / GRAPH, ["x"], ["embedding"],
                 {"x": {0: "N", 1: "T"}, "embedding": {0: "N"}})
    finish_graph(out_dir / GRAPH, {"model_type": MODEL_TYPE, "embedding_dim": cfg.embedding_dim,
                                   "num_bins": cfg.num_bins}, {"embedding": ["N", cfg.embedding_dim]})
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_type": MODEL_TYPE,
        "sample_rate": SAMPLE_RATE,
        "features": features.to_dict(),
        "embedding": {"dim": cfg.embedding_dim},
    }
    write_manifest(out_dir, manifest, (GRAPH,), model_card)
    return out_dir
