"""The model card states what a model stands on: every warm-start stage, with its steps and hours."""
from __future__ import annotations

from pathlib import Path

from framegate.export.model_card import render_model_card

CORPUS = {"seed": 1, "licences": {"espeak-ng": "GPL-3.0-or-later"},
          "splits": {"train": {"hours": 1.5, "utterances": 20, "empty_utterances": 2, "voices": ["a", "b"],
                               "families": ["f"], "synthesizers": {"espeak-ng": 20}}}}
WER = {"utterances": 3, "words": 30, "wer": 0.5, "ci95": [0.4, 0.6], "rtf": 0.02, "onnx_threads": 1,
       "machine": {"machine": "x86_64", "cpus": 2},
       "per_family": {"f": {"synthesizers": ["espeak-ng"], "utterances": 3, "words": 30, "wer": 0.5,
                            "ci95": [0.4, 0.6]}}}


def test_card_lists_every_warm_start_stage(tiny_bundle: Path) -> None:
    stage1 = {"from": "runs/s1/weights_last.pt", "parts": "encoder", "step": 4623, "train_seconds": 3600.0,
              "before": None}
    stage2 = {"from": "runs/s2/weights_last.pt", "parts": "all", "step": 8000, "train_seconds": 7200.0,
              "before": stage1}
    card = render_model_card(tiny_bundle, CORPUS, {"step": 100, "train_seconds": 1800.0, "warm_start": stage2},
                             WER, None)
    assert "Steps: 100; training wall time 0.50 h" in card and "3.50 h with the stages it stands on" in card
    assert ("Warm-started from runs/s2/weights_last.pt (all its weights: 8000 steps, 2.00 h before this run), "
            "itself warm-started from runs/s1/weights_last.pt (its encoder: 4623 steps, 1.00 h before that).") in card
    assert "Overall WER **50.0 %**" in card and "corpus seed 1." in card


def test_card_of_a_merged_corpus_names_every_seed(tiny_bundle: Path) -> None:
    card = render_model_card(tiny_bundle, {**CORPUS, "seed": [1, 2]}, {"step": 1, "train_seconds": 1.0}, WER, None)
    assert "corpus seeds 1, 2 (merged builds)." in card


def test_card_names_a_prediction_network_warm_start(tiny_bundle: Path) -> None:
    start = {"from": "checkpoints/default/weights_last.pt", "parts": "prediction", "step": 4600,
             "train_seconds": 3600.0}  # written before the chain was recorded: no "before"
    card = render_model_card(tiny_bundle, CORPUS, {"step": 10, "train_seconds": 60.0, "warm_start": start}, WER, None)
    assert "(its prediction network and joiner: 4600 steps" in card
    assert "at least 1.02 h with the stages it stands on" in card  # the start's own history is unknown
    assert card.count("Warm-started") == 1


def test_card_says_how_the_wer_was_decoded(tiny_bundle: Path) -> None:
    checkpoint = {"step": 10, "train_seconds": 60.0}
    assert "Decoded with greedy search (at most one token per 40 ms" in render_model_card(
        tiny_bundle, CORPUS, checkpoint, WER, None)
    beam = {**WER, "search": {"method": "modified_beam_search", "beam": 8, "lm_weight": 0.4, "token_bonus": 1.0,
                              "lm_order": 5}}
    card = render_model_card(tiny_bundle, CORPUS, checkpoint, beam, None)
    assert "modified beam search (beam 8) and shallow fusion of the bundle's 5-gram token language model" in card
    assert "estimated on training text (no dev or test sentence)" in card


def test_card_of_an_int8_bundle_says_so(tiny_bundle_int8: Path) -> None:
    checkpoint = {"step": 10, "train_seconds": 60.0}
    card = render_model_card(tiny_bundle_int8, CORPUS, checkpoint, WER, None)
    assert "LSTM weights in int8" in card and "calibrated on speech-like test signal" in card
    assert "int8" not in render_model_card(tiny_bundle_int8.parent / "fp32", CORPUS, checkpoint, WER, None)
