"""Random-weight bundles at a training recipe's size, for timing and agreement before a trained bundle exists.

The ARM benchmark measures instruction counts and cross-architecture agreement; neither needs
trained weights, but both need the real sizes (GEMM shapes decide the cost). So a recipe's
`[model]` section is instantiated with seeded random weights and exported exactly as training's
checkpoints are. Two deliberate departures from a fresh training init, both recorded in the
model card: the feature normalization maps fbank values to about unit scale (as the test
fixtures do), and for gated models `gate_init_bias` is 0 so the random arbitrators switch parts
both on and off (the recipe's warm-start bias of 3 would keep every part on).
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict
from pathlib import Path


def random_bundle(recipe: Path, out_dir: Path, seed: int = 0) -> Path:
    """Export a seeded random model of `recipe`'s model type and size to `out_dir` and return it."""
    import torch

    from framegate.export.models import model_classes
    from framegate.export.onnx_export import export_bundle

    raw = tomllib.loads(Path(recipe).read_text(encoding="utf-8"))
    model_type = raw.get("model_type", "lstm_transducer")
    model_class, config_class = model_classes(model_type)
    settings = dict(raw.get("model", {}))
    if model_type == "gated_transformer":
        settings["gate_init_bias"] = 0.0
    config = config_class(**settings)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        model.encoder.feature_mean.fill_(-11.0)
        model.encoder.feature_inv_std.fill_(1 / 7.0)
    out_dir = Path(out_dir)
    work = out_dir.parent / f"{out_dir.name}_checkpoint"
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "weights.pt"
    torch.save({"model": model.state_dict(), "model_config": asdict(config), "model_type": model_type}, checkpoint)
    tokens = work / "tokens.txt"
    pieces = ["<blk>", "<unk>"] + [f"piece{i}" for i in range(config.vocab_size - 2)]
    tokens.write_text("".join(f"{p} {i}\n" for i, p in enumerate(pieces)), encoding="utf-8")
    card = {"purpose": "ARM benchmark", "weights": f"random (seed {seed}), untrained", "recipe": str(recipe),
            "departures": "feature normalization to unit scale; gated: gate_init_bias 0"}
    return export_bundle(checkpoint, out_dir, tokens=tokens, model_card=card)
