"""Rule-based endpointing: when to close an utterance, sherpa-onnx's three rules.

Silence here is what the model says, not an energy threshold: the encoder frames since
the last emitted token. An endpoint closes the utterance (the stream resets its state),
which also keeps a long stream's per-utterance state and latency bounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointConfig:
    """Thresholds in seconds; math.inf switches a rule off.

    rule1: trailing silence with nothing decoded in the utterance (a stream of noise).
    rule2: trailing silence after some tokens (the speaker paused).
    rule3: utterance length, whatever was decoded (a speaker who never pauses).
    """

    rule1_min_trailing_silence_s: float = 2.4
    rule2_min_trailing_silence_s: float = 0.8
    rule3_min_utterance_length_s: float = 20.0

    def validate(self) -> None:
        """Raise ValueError naming the first threshold that is not a positive number."""
        for name in ("rule1_min_trailing_silence_s", "rule2_min_trailing_silence_s",
                     "rule3_min_utterance_length_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
                raise ValueError(f"EndpointConfig.{name} must be a positive number of seconds, got {value!r}")

    def __str__(self) -> str:
        return (f"EndpointConfig(rule1 silence {self.rule1_min_trailing_silence_s} s without tokens, "
                f"rule2 silence {self.rule2_min_trailing_silence_s} s after tokens, "
                f"rule3 utterance {self.rule3_min_utterance_length_s} s)")


def detect_endpoint(config: EndpointConfig, utterance_s: float, trailing_silence_s: float,
                    decoded_anything: bool) -> bool:
    """Whether the utterance so far ends here (any rule firing)."""
    if not decoded_anything and trailing_silence_s >= config.rule1_min_trailing_silence_s:
        return True
    if decoded_anything and trailing_silence_s >= config.rule2_min_trailing_silence_s:
        return True
    return utterance_s >= config.rule3_min_utterance_length_s
