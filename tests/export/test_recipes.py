"""Every shipped training recipe loads and ends: a typo or an unbounded run is found before hours of CPU."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from framegate.export.train import TrainConfig, _lr
from framegate.export.train_speaker import SpeakerTrainConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "export" / "recipes").glob("*.toml"))


def test_the_recipes_folder_is_found() -> None:
    assert len(RECIPES) >= 10


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_is_bounded(path: Path) -> None:
    loader = SpeakerTrainConfig.load if path.stem.startswith("speaker_embedding") else TrainConfig.load
    cfg = loader(path)
    assert 0 < cfg.max_steps <= 100_000, f"{path.name}: max_steps {cfg.max_steps}"
    assert cfg.work_dir.startswith("runs/"), f"{path.name}: work_dir {cfg.work_dir}"
    if getattr(cfg, "init_from", ""):  # warm starts from another run's milestone or the kept checkpoints/
        assert cfg.init_from.startswith(("runs/", "checkpoints/")), f"{path.name}: init_from {cfg.init_from}"


def test_the_gated_runs_and_their_dense_reference_train_with_the_same_transducer_loss() -> None:
    """A gated model's WER is judged against the dense reference: both must see the same loss."""
    family = {p.stem: TrainConfig.load(p) for p in RECIPES if p.stem.startswith(("dense_transformer", "gated_",
                                                                                 "sliding_window"))}
    assert len(family) == 16  # dense, eleven gated points, sliding window, three trained longer (two gated, dense)
    assert {cfg.prune_range for cfg in family.values()} == {5}
    assert all(cfg.prune_warmup_steps == 0 for name, cfg in family.items() if name != "dense_transformer")


def test_the_gated_runs_continue_their_dense_reference_at_its_learning_rates() -> None:
    """Same total steps, same learning rate at every step: only the gates differ from the reference."""
    recipes = {p.stem: p for p in RECIPES}
    dense = TrainConfig.load(recipes["dense_transformer"])
    for name in ("gated_feature", "gated_feature_lambda64", "gated_feature_nonspeech", "gated_feature_lambda96_nonspeech",
                 "gated_feature_distilled", "gated_feature_nonspeech_distilled", "gated_feature_nonspeech_distilled_speech",
                 "gated_feature_distilled_lambda256", "gated_feature_distilled_lambda176", "gated_block",
                 "gated_block_distilled", "sliding_window"):
        cfg = TrainConfig.load(recipes[name])
        branch_step = int(cfg.init_from.rsplit("weights_step", 1)[1].removesuffix(".pt"))
        assert cfg.init_from == f"checkpoints/dense_transformer/weights_step{branch_step}.pt", name
        assert (ROOT / cfg.init_from).is_file(), f"{name}: {cfg.init_from} is not kept in git"
        assert cfg.lr_step_offset == branch_step, name
        assert branch_step % dense.milestone_every_steps == 0, name  # the dense run writes that milestone
        assert cfg.max_steps + cfg.lr_step_offset == dense.max_steps, name
        for step in (1, 1000, cfg.max_steps):
            assert _lr(step, cfg) == pytest.approx(_lr(step + branch_step, dense)), (name, step)


def test_the_longer_headline_continues_it_where_it_stopped() -> None:
    """gated_feature_long: the headline's kept weights, the dense schedule from step 9,000 on, the
    Gumbel temperature at the headline's final value, everything else the headline's."""
    recipes = {p.stem: p for p in RECIPES}
    dense, head = TrainConfig.load(recipes["dense_transformer"]), TrainConfig.load(recipes["gated_feature"])
    long = TrainConfig.load(recipes["gated_feature_long"])
    assert long.init_from == "checkpoints/gated_feature/weights_last.pt" and (ROOT / long.init_from).is_file()
    assert long.lr_step_offset == head.lr_step_offset + head.max_steps
    for step in (1, 1000, long.max_steps):
        assert _lr(step, long) == pytest.approx(_lr(step + long.lr_step_offset, dense))
    assert long.model.tau_start == long.model.tau_end == head.model.tau_end
    assert replace(long.model, tau_start=head.model.tau_start) == head.model


def test_the_longer_dense_reference_matches_the_longer_headline() -> None:
    """dense_transformer_long: the dense run's kept step-9,000 weights on its own schedule to the
    longer headline's 12,000 steps; the model and everything that shapes the loss are the dense run's."""
    recipes = {p.stem: p for p in RECIPES}
    dense, long_dense = (TrainConfig.load(recipes[n]) for n in ("dense_transformer", "dense_transformer_long"))
    long_gated = TrainConfig.load(recipes["gated_feature_long"])
    assert long_dense.init_from == "checkpoints/dense_transformer/weights_last.pt"
    assert (ROOT / long_dense.init_from).is_file()
    assert long_dense.lr_step_offset == dense.max_steps
    assert long_dense.lr_step_offset + long_dense.max_steps == long_gated.lr_step_offset + long_gated.max_steps
    for step in (1, 1000, long_dense.max_steps):
        assert _lr(step, long_dense) == pytest.approx(_lr(step + dense.max_steps, dense))
    assert long_dense.model == dense.model
    for name in ("ctc_weight", "ctc_units", "prune_range", "max_batch_frames", "nonspeech_pad_s"):
        assert getattr(long_dense, name) == getattr(dense, name), name


def test_the_longer_lambda176_run_continues_it_against_the_longer_dense_reference() -> None:
    """gated_feature_distilled_lambda176_long: lambda 176's kept weights, the dense schedule from
    step 9,000 on (the longer dense reference's), its final temperature, everything else unchanged."""
    recipes = {p.stem: p for p in RECIPES}
    dense, first, long, long_dense = (TrainConfig.load(recipes[n]) for n in (
        "dense_transformer", "gated_feature_distilled_lambda176", "gated_feature_distilled_lambda176_long",
        "dense_transformer_long"))
    assert long.init_from == "checkpoints/gated_feature_distilled_lambda176/weights_last.pt"
    assert (ROOT / long.init_from).is_file()
    assert long.lr_step_offset == first.lr_step_offset + first.max_steps == dense.max_steps
    assert long.lr_step_offset + long.max_steps == long_dense.lr_step_offset + long_dense.max_steps
    for step in (1, 1000, long.max_steps):
        assert _lr(step, long) == pytest.approx(_lr(step + long.lr_step_offset, dense))
    assert long.model.tau_start == long.model.tau_end == first.model.tau_end
    assert replace(long.model, tau_start=first.model.tau_start) == first.model
    assert replace(long, model=first.model, work_dir=first.work_dir, init_from=first.init_from,
                   lr_step_offset=first.lr_step_offset) == first


def test_the_nonspeech_priced_run_differs_from_the_headline_only_in_that_term() -> None:
    recipes = {p.stem: p for p in RECIPES}
    head, quiet = (TrainConfig.load(recipes[n]) for n in ("gated_feature", "gated_feature_nonspeech"))
    assert quiet.model.nonspeech_compute_lambda > 0 == head.model.nonspeech_compute_lambda
    assert replace(quiet.model, nonspeech_compute_lambda=0.0) == head.model
    assert replace(quiet, model=head.model, work_dir=head.work_dir) == head


def test_the_lambda96_run_differs_from_the_nonspeech_run_only_in_the_speech_price() -> None:
    recipes = {p.stem: p for p in RECIPES}
    quiet, lower = (TrainConfig.load(recipes[n]) for n in ("gated_feature_nonspeech", "gated_feature_lambda96_nonspeech"))
    assert lower.model.compute_lambda < quiet.model.compute_lambda
    assert lower.model.nonspeech_compute_lambda == quiet.model.nonspeech_compute_lambda > 0
    assert replace(lower.model, compute_lambda=quiet.model.compute_lambda) == quiet.model
    assert replace(lower, model=quiet.model, work_dir=quiet.work_dir) == quiet


def test_the_distilled_runs_add_the_dense_reference_as_their_teacher_and_nothing_else() -> None:
    recipes = {p.stem: p for p in RECIPES}
    dense = TrainConfig.load(recipes["dense_transformer"])
    teacher_path = "checkpoints/dense_transformer/weights_last.pt"
    assert torch.load(ROOT / teacher_path, weights_only=False)["step"] == dense.max_steps  # the reference itself
    for plain_name, taught_name in (("gated_feature_lambda96_nonspeech", "gated_feature_distilled"),
                                    ("gated_feature_nonspeech", "gated_feature_nonspeech_distilled")):
        plain, taught = TrainConfig.load(recipes[plain_name]), TrainConfig.load(recipes[taught_name])
        assert taught.distill_from == teacher_path
        assert taught.distill_weight > 0 == plain.distill_weight
        assert replace(taught, distill_from="", distill_weight=0.0, work_dir=plain.work_dir) == plain


def test_default_stage6_continues_stage5_with_a_delay_penalty_and_the_same_model() -> None:
    """Stage 6 is judged against stage 5 for latency: the same model and FastEmit, from stage 5's
    kept weights (the blob history's 5e4a0b3 shipped), with the delay penalty added."""
    recipes = {p.stem: p for p in RECIPES}
    five, six = (TrainConfig.load(recipes[n]) for n in ("default_stage5", "default_stage6"))
    assert six.init_from == "checkpoints/default_stage5/weights_last.pt"
    assert (ROOT / six.init_from).is_file() and (ROOT / "checkpoints/default_stage5/bpe.model").is_file()
    assert six.model == five.model and six.fastemit_lambda == five.fastemit_lambda > 0
    assert six.delay_penalty > 0 == five.delay_penalty
    assert six.peak_lr <= five.peak_lr and six.final_lr == five.final_lr


def test_the_speech_only_distilled_run_differs_from_its_all_frames_twin_only_there() -> None:
    recipes = {p.stem: p for p in RECIPES}
    every, speech = (TrainConfig.load(recipes[n]) for n in ("gated_feature_nonspeech_distilled",
                                                             "gated_feature_nonspeech_distilled_speech"))
    assert speech.distill_speech_only and not every.distill_speech_only
    assert replace(speech, distill_speech_only=False, work_dir=every.work_dir) == every


def test_the_lambda256_distilled_run_doubles_both_prices_and_nothing_else() -> None:
    recipes = {p.stem: p for p in RECIPES}
    base, dear = (TrainConfig.load(recipes[n]) for n in ("gated_feature_nonspeech_distilled",
                                                          "gated_feature_distilled_lambda256"))
    assert dear.model.compute_lambda == 2 * base.model.compute_lambda
    assert dear.model.nonspeech_compute_lambda == 2 * base.model.nonspeech_compute_lambda
    assert replace(dear, model=base.model, work_dir=base.work_dir) == base
    assert replace(dear.model, compute_lambda=base.model.compute_lambda,
                   nonspeech_compute_lambda=base.model.nonspeech_compute_lambda) == base.model


def test_the_lambda176_distilled_run_lowers_only_the_speech_price_of_the_lambda256_run() -> None:
    recipes = {p.stem: p for p in RECIPES}
    dear, mid = (TrainConfig.load(recipes[n]) for n in ("gated_feature_distilled_lambda256",
                                                         "gated_feature_distilled_lambda176"))
    assert 128 < mid.model.compute_lambda < dear.model.compute_lambda
    assert replace(mid.model, compute_lambda=dear.model.compute_lambda) == dear.model
    assert replace(mid, model=dear.model, work_dir=dear.work_dir) == dear


def test_default_stage7_repeats_stage5s_cycle_on_the_shipped_weights_with_vtlp() -> None:
    """Stage 5's cycle, shortened to fit one session, on stage 6, keeping stage 6's delay penalty; VTLP is the
    one new thing."""
    recipes = {p.stem: p for p in RECIPES}
    five, six, seven = (TrainConfig.load(recipes[n]) for n in ("default_stage5", "default_stage6", "default_stage7"))
    assert seven.init_from == "checkpoints/default_stage6/weights_last.pt" and 0 < seven.vtlp_max_warp <= 0.2
    assert five.vtlp_max_warp == 0 and seven.spec_augment_after == 0  # augmentation, hence the warp, from step 0
    assert seven.delay_penalty == six.delay_penalty > 0 == five.delay_penalty
    assert seven.max_steps - seven.decay_steps < five.max_steps - five.decay_steps  # held for less, then decays
    assert replace(seven, vtlp_max_warp=0.0, delay_penalty=0.0, init_from=five.init_from, work_dir=five.work_dir,
                   max_steps=five.max_steps, decay_steps=five.decay_steps) == five


def test_default_stage9_is_stage6_on_the_merged_corpus() -> None:
    """More audio is the one new thing: stage 6's model, loss and schedule (held longer, the same decay)
    on the merged 36 h corpus."""
    recipes = {p.stem: p for p in RECIPES}
    six, nine = (TrainConfig.load(recipes[n]) for n in ("default_stage6", "default_stage9"))
    assert nine.init_from == "checkpoints/default_stage6/weights_last.pt" and nine.corpus_dir == "data/corpus_36h"
    assert nine.max_steps > six.max_steps and nine.decay_steps == six.decay_steps
    assert replace(nine, corpus_dir=six.corpus_dir, work_dir=six.work_dir, init_from=six.init_from,
                   max_steps=six.max_steps) == six


def test_default_stage10_is_stage9_on_sixty_hours() -> None:
    """More audio again is the one new thing: stage 9's model, loss and schedule from stage 9's kept
    weights, on the 60 h merge."""
    recipes = {p.stem: p for p in RECIPES}
    nine, ten = (TrainConfig.load(recipes[n]) for n in ("default_stage9", "default_stage10"))
    assert ten.init_from == "checkpoints/default_stage9/weights_last.pt" and ten.corpus_dir == "data/corpus_60h"
    assert replace(ten, corpus_dir=nine.corpus_dir, work_dir=nine.work_dir, init_from=nine.init_from) == nine


def test_default_stage11_is_stage10_longer_on_another_shuffle() -> None:
    recipes = {p.stem: p for p in RECIPES}
    ten, eleven = (TrainConfig.load(recipes[n]) for n in ("default_stage10", "default_stage11"))
    assert eleven.init_from == "checkpoints/default_stage10/weights_last.pt" and eleven.seed != ten.seed
    assert eleven.max_steps > ten.max_steps and eleven.decay_steps > ten.decay_steps
    assert replace(eleven, work_dir=ten.work_dir, init_from=ten.init_from, seed=ten.seed, max_steps=ten.max_steps,
                   decay_steps=ten.decay_steps) == ten


def test_default_stage12_is_stage10_from_stage11_on_eighty_four_hours() -> None:
    """New renderings are the one new thing: stage 10's schedule from stage 11's weights, on the 84 h merge."""
    recipes = {p.stem: p for p in RECIPES}
    ten, twelve = (TrainConfig.load(recipes[n]) for n in ("default_stage10", "default_stage12"))
    assert twelve.init_from == "checkpoints/default/weights_last.pt" and twelve.corpus_dir == "data/corpus_84h"
    assert twelve.seed not in (ten.seed, 11)
    assert replace(twelve, corpus_dir=ten.corpus_dir, work_dir=ten.work_dir, init_from=ten.init_from,
                   seed=ten.seed) == ten


def test_default_stage13_is_stage12_continued_with_a_doubled_delay_penalty() -> None:
    recipes = {p.stem: p for p in RECIPES}
    twelve, thirteen = (TrainConfig.load(recipes[n]) for n in ("default_stage12", "default_stage13"))
    assert thirteen.init_from == "checkpoints/default_stage12/weights_last.pt" and thirteen.seed != twelve.seed
    assert (ROOT / thirteen.init_from).is_file()
    assert thirteen.delay_penalty == 2 * twelve.delay_penalty and thirteen.max_steps < twelve.max_steps
    assert replace(thirteen, work_dir=twelve.work_dir, init_from=twelve.init_from, seed=twelve.seed,
                   max_steps=twelve.max_steps, delay_penalty=twelve.delay_penalty) == twelve


def test_the_deep_separator_run_is_stage1_split_two_plus_one_from_the_newer_default() -> None:
    """The separator reads two mixture layers: that split, the warm start and the corpus are what changed."""
    recipes = {p.stem: p for p in RECIPES}
    one, deep = (TrainConfig.load(recipes[n]) for n in ("sts", "sts_deep"))
    assert (deep.model.mix_layers, deep.model.rec_layers) == (2, 1) and deep.corpus_dir == "data/corpus_60h"
    assert deep.init_from == "checkpoints/default/weights_last.pt" and deep.seed not in (1, 2, 3)
    assert replace(deep, corpus_dir=one.corpus_dir, work_dir=one.work_dir, init_from=one.init_from, seed=one.seed,
                   model=replace(deep.model, mix_layers=1, rec_layers=2)) == one
