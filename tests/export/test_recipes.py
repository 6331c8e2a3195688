"""Every shipped training recipe loads and ends: a typo or an unbounded run is found before hours of CPU."""
from __future__ import annotations

from pathlib import Path

import pytest

from framegate.export.train import TrainConfig
from framegate.export.train_speaker import SpeakerTrainConfig

RECIPES = sorted((Path(__file__).resolve().parents[2] / "export" / "recipes").glob("*.toml"))


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
