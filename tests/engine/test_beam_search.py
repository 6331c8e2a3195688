"""Modified beam search: exact against brute-force alignment sums when nothing is pruned, greedy
at beam 1, streaming equals offline with a language model, and its settings refused by name."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from framegate.engine import offline
from framegate.engine.beam_search import BeamSearch, BeamSearchConfig, configured_search
from framegate.engine.bundle import Bundle
from framegate.engine.decoding import GreedySearch
from framegate.engine.errors import BundleError, SearchSettingError
from framegate.engine.recognizer import Recognizer
from framegate.engine.token_lm import TokenLm
from framegate.export.token_lm import attach, estimate

VOCAB, DIM, CONTEXT = 5, 6, 2  # blank, <unk>, three pieces


class _Session:
    def __init__(self, fn):
        self.run = lambda _outputs, feeds: [fn(**feeds)]


def _fake_bundle(seed: int = 0) -> SimpleNamespace:
    """Decoder and joiner as small numpy functions with ONNX Runtime's `run` signature."""
    rng = np.random.default_rng(seed)
    embed = rng.normal(size=(VOCAB + 1, CONTEXT, DIM)).astype(np.float32)  # row VOCAB: the -1 padding
    proj = rng.normal(size=(DIM, VOCAB)).astype(np.float32)

    def decoder(y):
        return np.stack([sum(embed[t, i] for i, t in enumerate(row)) for row in y]).astype(np.float32)

    def joiner(encoder_out, decoder_out):
        return (np.tanh(encoder_out + decoder_out) @ proj).astype(np.float32)

    tokens = ["<blk>", "<unk>", "▁a", "b", "c"]
    return SimpleNamespace(decoder_session=_Session(decoder), joiner_session=_Session(joiner), tokens=tokens,
                           decoder=SimpleNamespace(context_size=CONTEXT, vocab_size=VOCAB, blank_id=0), unk_id=1)


def _brute_force(bundle, frames: np.ndarray, lm: TokenLm | None, weight: float, bonus: float) -> dict:
    """log sum over every alignment (at most one piece per frame) of each emitted sequence."""
    sums: dict[tuple[int, ...], float] = {}
    for choices in itertools.product(range(VOCAB), repeat=len(frames)):
        tokens: list[int] = []
        score = 0.0
        lm_context = lm.initial_context() if lm else ()
        for frame, choice in zip(frames, choices):
            context = ((-1,) * (CONTEXT - 1) + (0,) + tuple(tokens))[-CONTEXT:]
            d = bundle.decoder_session.run(None, {"y": np.array([context], dtype=np.int64)})[0]
            logits = bundle.joiner_session.run(None, {"encoder_out": frame[None], "decoder_out": d})[0][0]
            logits = logits.astype(np.float64)
            score += logits[choice] - np.logaddexp.reduce(logits)
            if choice >= 2:
                if lm is not None:
                    score += weight * float(lm.scores(lm_context)[choice]) + bonus
                    lm_context = lm.next_context(lm_context, choice)
                tokens.append(choice)
        key = tuple(tokens)
        sums[key] = float(np.logaddexp(sums[key], score)) if key in sums else score
    return sums


@pytest.mark.parametrize("with_lm", [False, True])
def test_unpruned_beam_search_scores_every_sequence_as_the_sum_over_its_alignments(with_lm):
    bundle = _fake_bundle()
    frames = np.random.default_rng(3).normal(size=(4, DIM)).astype(np.float32)
    lm, weight, bonus = None, 0.0, 0.0
    if with_lm:
        lm = TokenLm.from_ngrams(estimate([["▁a", "b"], ["▁a", "c", "c"], ["b"]], ["▁a", "b", "c"], 2),
                                 bundle.tokens)
        weight, bonus = 0.7, 0.3
    search = BeamSearch(bundle, BeamSearchConfig(beam=10_000, lm_weight=weight, token_bonus=bonus), lm)
    state = search.initial_state()
    search.search(frames[:1], state)
    search.search(frames[1:], state)  # two calls: the state carries the hypotheses across
    expected = _brute_force(bundle, frames, lm, weight, bonus)
    got = {h.tokens: h.score for h in state.hyps}
    assert set(got) == set(expected)
    for tokens, score in expected.items():
        assert got[tokens] == pytest.approx(score, abs=1e-6)  # LM scores are float32
    assert state.tokens == list(max(expected, key=expected.get))


def test_pruned_beam_keeps_the_best_and_at_most_beam_hypotheses():
    bundle = _fake_bundle(1)
    frames = np.random.default_rng(4).normal(size=(6, DIM)).astype(np.float32)
    search = BeamSearch(bundle, BeamSearchConfig(beam=3))
    state = search.initial_state()
    search.search(frames, state)
    assert 1 <= len(state.hyps) <= 3
    assert state.frames == 6 and len(state.token_frames) == len(state.tokens)
    assert all(0 <= f < 6 for f in state.token_frames) and state.token_frames == sorted(set(state.token_frames))


def test_beam_of_one_without_a_language_model_decides_as_greedy(tiny_bundle, speechlike_16k):
    bundle = Bundle.load(tiny_bundle)
    frames = offline.encoder_output(bundle, speechlike_16k)
    greedy, beam = GreedySearch(bundle), BeamSearch(bundle, BeamSearchConfig(beam=1))
    g, b = greedy.initial_state(), beam.initial_state()
    greedy.search(frames, g)
    beam.search(frames, b)
    assert len(g.tokens) > 10
    assert (b.tokens, b.token_frames, b.trailing_blank_frames) == (g.tokens, g.token_frames, g.trailing_blank_frames)


@pytest.fixture(scope="module")
def lm_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with a 3-gram over its pieces (random text that prefers ▁a b) as its search."""
    out = tmp_path_factory.mktemp("lm_bundle") / "tiny"
    shutil.copytree(tiny_bundle, out)
    bundle = Bundle.load(out)
    rng = np.random.default_rng(0)
    emitting = bundle.tokens[2:]  # after <blk>, <unk>
    sentences = [["▁a", "b"] * int(rng.integers(1, 4)) + [str(rng.choice(emitting))] for _ in range(200)]
    attach(bundle, estimate(sentences, emitting, 3), {"beam": 4, "lm_weight": 0.3, "token_bonus": 1.0},
           {"purpose": "tests"})
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_with_a_language_model_equals_one_offline_search(lm_bundle, speechlike_16k, seed,
                                                                    stream_in_random_blocks):
    recognizer = Recognizer(lm_bundle, endpoint=None)
    assert isinstance(recognizer._search, BeamSearch)
    stream = stream_in_random_blocks(recognizer, speechlike_16k, seed)
    bundle = recognizer.bundle
    search = configured_search(bundle)
    state = search.initial_state()
    search.search(offline.encoder_output(bundle, speechlike_16k), state)
    result = stream.result
    assert len(state.tokens) > 10
    assert result.tokens == [bundle.tokens[t] for t in state.tokens]
    assert result.timestamps == pytest.approx([f * stream.encoder_frame_s for f in state.token_frames])


def _lm_log_probability(lm: TokenLm, tokens: list[int]) -> float:
    context, total = lm.initial_context(), 0.0
    for token in tokens:
        total += float(lm.scores(context)[token])
        context = lm.next_context(context, token)
    return total


def test_the_language_model_moves_the_result_toward_what_it_prefers(lm_bundle, speechlike_16k):
    bundle = Bundle.load(lm_bundle)
    lm = TokenLm.load(lm_bundle / "lm.npz", bundle.tokens)
    frames = offline.encoder_output(bundle, speechlike_16k)
    results = {}
    for weight in (0.0, 2.0):  # the bonus keeps about as many pieces as without the LM
        search = BeamSearch(bundle, BeamSearchConfig(beam=4, lm_weight=weight, token_bonus=3 * weight), lm)
        state = search.initial_state()
        search.search(frames, state)
        results[weight] = state.tokens
    assert results[0.0] != results[2.0] and len(results[2.0]) > 10
    per_token = {w: _lm_log_probability(lm, t) / len(t) for w, t in results.items()}
    assert per_token[2.0] > per_token[0.0]


def test_the_bundle_search_and_overrides(lm_bundle, tiny_bundle):
    bundle = Bundle.load(lm_bundle)
    search = configured_search(bundle)
    assert isinstance(search, BeamSearch) and search.config == BeamSearchConfig(4, 0.3, 1.0)
    assert configured_search(bundle, beam=9).config.beam == 9
    assert isinstance(configured_search(bundle, beam=1, lm_weight=0), GreedySearch)
    assert isinstance(configured_search(Bundle.load(tiny_bundle)), GreedySearch)  # no search section
    with pytest.raises(SearchSettingError, match="needs a language model"):
        configured_search(Bundle.load(tiny_bundle), lm_weight=0.5)
    with pytest.raises(SearchSettingError, match="beam"):
        Recognizer(lm_bundle, beam=0)
    with pytest.raises(SearchSettingError, match="lm_weight"):
        Recognizer(lm_bundle, lm_weight=float("nan"))


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "bundle.json").read_text())
    edit(manifest)
    (dst / "bundle.json").write_text(json.dumps(manifest))
    return dst


def test_bad_search_sections_are_refused_by_name(lm_bundle, tmp_path):
    def unlisted(m):
        del m["files"]["lm.npz"]

    def unknown_key(m):
        m["search"]["beams"] = 3

    def zero_beam(m):
        m["search"]["beam"] = 0

    with pytest.raises(BundleError, match="not listed"):
        Recognizer(_edited_copy(lm_bundle, tmp_path / "a", unlisted))
    with pytest.raises(BundleError, match="unknown keys"):
        Recognizer(_edited_copy(lm_bundle, tmp_path / "b", unknown_key))
    with pytest.raises(BundleError, match="bundle.json: search: beam must be"):
        Recognizer(_edited_copy(lm_bundle, tmp_path / "d", zero_beam))
    damaged = _edited_copy(lm_bundle, tmp_path / "c", lambda m: None)
    data = bytearray((damaged / "lm.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "lm.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="lm.npz: checksum mismatch"):
        Recognizer(damaged)
