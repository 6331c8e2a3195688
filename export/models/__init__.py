"""The transducer models `framegate train` can build, by the `model_type` a recipe names.

Every model has the same face (encoder, decoder, joiner, ctc_head, cfg), so training,
greedy search and export treat them alike; bundle.json records the same `model_type`.
"""
from __future__ import annotations

from framegate.export.models.convrnnt import ConvRnnt, ConvRnntConfig
from framegate.export.models.gated_transformer import GatedTransformer, GatedTransformerConfig
from framegate.export.models.lstm_transducer import LstmTransducer, LstmTransducerConfig
from framegate.export.models.sts import SeparatorTransducerSegmenter, StsConfig

MODEL_TYPES: dict[str, tuple[type, type]] = {
    "lstm_transducer": (LstmTransducer, LstmTransducerConfig),
    "convrnnt": (ConvRnnt, ConvRnntConfig),
    "gated_transformer": (GatedTransformer, GatedTransformerConfig),
    "sts": (SeparatorTransducerSegmenter, StsConfig),
}


def model_classes(model_type: str) -> tuple[type, type]:
    """(model class, config class) for `model_type`; ValueError naming the known types."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r} (known: {', '.join(MODEL_TYPES)})")
    return MODEL_TYPES[model_type]
