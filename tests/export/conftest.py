from pathlib import Path

import pytest

from framegate.export.corpus.build import build_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About a minute of synthesized speech in every split, shared by the training tests."""
    out = tmp_path_factory.mktemp("tiny_corpus")
    build_corpus(out_dir=out, hours=0.02, seed=3, workers=2, test_words=60, dev_hours=0.005, progress=False)
    return out
