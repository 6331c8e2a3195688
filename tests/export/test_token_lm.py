"""The token n-gram: Kneser-Ney estimates are distributions, ARPA and the compiled form agree
with a plain back-off walk, and files that do not fit the bundle are refused by name."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from framegate.engine.errors import BundleError
from framegate.engine.token_lm import TokenLm
from framegate.export.token_lm import BOS, EOS, estimate, write_arpa

PIECES = ["<blk>", "<unk>", "▁a", "▁b", "c", "d", "e"]  # a bundle's tokens.txt order
WORDS = PIECES[2:]


def _sentences(seed: int = 0, count: int = 60) -> list[list[str]]:
    """Random piece sequences with some structure (c mostly follows ▁a), so higher orders matter."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        words = []
        for _ in range(int(rng.integers(1, 8))):
            words.append(str(rng.choice(WORDS)))
            if words[-1] == "▁a" and rng.random() < 0.8:
                words.append("c")
        out.append(words)
    return out


def _backoff_probability(ngrams: dict, word: str, context: tuple[str, ...]) -> float:
    """ARPA semantics written out: the longest known n-gram, else back-off weight times the shorter context."""
    if context + (word,) in ngrams:
        return 10 ** ngrams[context + (word,)][0]
    if not context:
        raise KeyError(word)
    weight = ngrams.get(context, (0.0, None))[1] if context in ngrams else None
    return 10 ** (weight or 0.0) * _backoff_probability(ngrams, word, context[1:])


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_probabilities_sum_to_one_after_any_context(order):
    ngrams = estimate(_sentences(), WORDS, order)
    contexts = [(), (BOS,), ("▁a",), (BOS, "▁a"), ("▁a", "c"), ("e", "e", "d"), ("d", "▁b", "▁a")]
    for context in contexts:
        context = context[len(context) - min(len(context), order - 1):] if order > 1 else ()
        total = sum(_backoff_probability(ngrams, w, context) for w in [*WORDS, EOS])
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_kneser_ney_learns_the_structure_of_the_text():
    ngrams = estimate(_sentences(count=300), WORDS, 2)
    after_a = _backoff_probability(ngrams, "c", ("▁a",))
    after_b = _backoff_probability(ngrams, "c", ("▁b",))
    assert after_a > 0.6 and after_b < 0.4  # c follows ▁a 80 % of the time, anything else ~1 time in 6


def test_words_never_seen_still_get_probability():
    ngrams = estimate([["▁a", "c"]] * 5, WORDS, 2)
    assert 0 < _backoff_probability(ngrams, "e", ("▁a",)) < _backoff_probability(ngrams, "c", ("▁a",))


def test_engine_scores_equal_the_back_off_walk_for_arpa_and_compiled_forms(tmp_path: Path):
    ngrams = estimate(_sentences(1), WORDS, 4)
    write_arpa(ngrams, tmp_path / "lm.arpa")
    from_arpa = TokenLm.from_arpa(tmp_path / "lm.arpa", PIECES)
    from_arpa.save(tmp_path / "lm.npz")
    compiled = TokenLm.load(tmp_path / "lm.npz", PIECES)
    ids = {p: i for i, p in enumerate(PIECES)}
    for context in [(BOS,), (BOS, "▁a"), ("▁a", "c", "e"), ("d", "d", "d"), ("e",)]:
        key = tuple(from_arpa.bos if w == BOS else ids[w] for w in context)
        expected = np.log([_backoff_probability(ngrams, w, context[-3:]) for w in WORDS])
        for lm in (from_arpa, compiled):
            np.testing.assert_allclose(lm.scores(key)[2:len(PIECES)], expected, rtol=0, atol=1e-5)


def test_next_context_keeps_order_minus_one_pieces(tmp_path: Path):
    lm = TokenLm.from_ngrams(estimate(_sentences(), WORDS, 3), PIECES)
    context = lm.initial_context()
    for token in (2, 4, 5):
        context = lm.next_context(context, token)
    assert context == (4, 5)


def test_an_arpa_over_other_pieces_is_refused(tmp_path: Path):
    write_arpa(estimate([["▁x", "y"]], ["▁x", "y"], 2), tmp_path / "lm.arpa")
    with pytest.raises(BundleError, match="not the bundle's pieces"):
        TokenLm.from_arpa(tmp_path / "lm.arpa", PIECES)


def test_a_truncated_arpa_is_refused(tmp_path: Path):
    write_arpa(estimate(_sentences(), WORDS, 3), tmp_path / "lm.arpa")
    lines = (tmp_path / "lm.arpa").read_text(encoding="utf-8").splitlines()
    (tmp_path / "cut.arpa").write_text("\n".join(lines[:len(lines) // 2]), encoding="utf-8")
    with pytest.raises(BundleError, match="truncated"):
        TokenLm.from_arpa(tmp_path / "cut.arpa", PIECES)


def test_a_file_that_is_not_arpa_is_refused(tmp_path: Path):
    (tmp_path / "x.arpa").write_text("hello world\n", encoding="utf-8")
    with pytest.raises(BundleError, match="not an ARPA file"):
        TokenLm.from_arpa(tmp_path / "x.arpa", PIECES)


def test_a_compiled_lm_over_other_pieces_or_corrupt_is_refused(tmp_path: Path):
    TokenLm.from_ngrams(estimate(_sentences(), WORDS, 2), PIECES).save(tmp_path / "lm.npz")
    with pytest.raises(BundleError, match="other pieces"):
        TokenLm.load(tmp_path / "lm.npz", [*PIECES[:-1], "f"])
    (tmp_path / "bad.npz").write_bytes((tmp_path / "lm.npz").read_bytes()[:100])
    with pytest.raises(BundleError, match="not a compiled framegate LM"):
        TokenLm.load(tmp_path / "bad.npz", PIECES)
    with np.load(tmp_path / "lm.npz") as data:
        arrays = {name: data[name] for name in data.files}
    for name, edit, message in [("gap", {"keys2": None, "keys3": arrays["keys2"]}, r"orders \[1, 3\] are not 1..n"),
                                ("missing", {"logp2": None}, "table 'logp2' is missing"),
                                ("unsorted", {"keys2": arrays["keys2"][::-1].copy()}, "increase strictly")]:
        edited = {k: v for k, v in {**arrays, **edit}.items() if v is not None}
        np.savez(tmp_path / f"{name}.npz", **edited)
        with pytest.raises(BundleError, match=message):
            TokenLm.load(tmp_path / f"{name}.npz", PIECES)


def test_estimate_refuses_no_text_and_order_zero():
    with pytest.raises(ValueError, match="no sentences"):
        estimate([], WORDS, 3)
    with pytest.raises(ValueError, match="order"):
        estimate(_sentences(), WORDS, 0)


def test_probabilities_are_finite_logs():
    ngrams = estimate(_sentences(), WORDS, 3)
    assert all(math.isfinite(logp) for logp, _ in ngrams.values())
    assert ngrams[(BOS,)][0] == -99.0  # <s> is a context only, ARPA's convention


def _tiny_bpe_bundle(tiny_checkpoint: Path, work: Path) -> tuple[Path, Path, Path]:
    """A sentencepiece model of the tiny checkpoint's vocabulary size, the bundle exported with its
    pieces, and a manifest of the text it was trained on: what 'framegate lm build' is given."""
    from framegate.export.onnx_export import export_bundle
    from framegate.export.tokenizer import train_bpe, write_tokens_txt

    rng = np.random.default_rng(0)
    words = ["face", "cab", "bad", "dice", "led", "bead", "add", "glade", "hide", "fade", "jab", "kid"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 7)))) for _ in range(300)]
    sp = train_bpe(texts, work / "bpe.model", 30)
    write_tokens_txt(sp, work / "tokens.txt")
    bundle = export_bundle(tiny_checkpoint, work / "bundle", tokens=work / "tokens.txt")
    (work / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return bundle, work / "bpe.model", work / "train.jsonl"


def test_lm_build_adds_the_bundles_search_and_transcribe_uses_it(tiny_checkpoint, tmp_path, capsys):
    import soundfile as sf

    from framegate.engine.beam_search import BeamSearch
    from framegate.engine.cli import main
    from framegate.engine.recognizer import Recognizer

    bundle, bpe, manifest = _tiny_bpe_bundle(tiny_checkpoint, tmp_path)
    code = main(["lm", "build", "--bundle", str(bundle), "--bpe", str(bpe), "--manifest", str(manifest),
                 "--order", "3", "--beam", "3", "--arpa", str(tmp_path / "lm.arpa")])
    assert code == 0, capsys.readouterr().err
    config = json.loads((bundle / "bundle.json").read_text())
    assert config["search"] == {"beam": 3, "lm_weight": 0.4, "token_bonus": 1.0, "lm": "lm.npz"}
    assert config["model_card"]["language_model"]["order"] == 3
    recognizer = Recognizer(bundle)
    assert isinstance(recognizer._search, BeamSearch) and recognizer._search.config.beam == 3
    tokens = recognizer.bundle.tokens
    arpa, compiled = TokenLm.from_arpa(tmp_path / "lm.arpa", tokens), TokenLm.load(bundle / "lm.npz", tokens)
    context = (arpa.bos, tokens.index("▁f"))
    np.testing.assert_allclose(arpa.scores(context), compiled.scores(context), atol=1e-6)

    signal = np.sin(np.arange(16000) * 0.05).astype(np.float32) * np.linspace(0, 0.5, 16000, dtype=np.float32)
    sf.write(tmp_path / "x.wav", signal, 16000)
    capsys.readouterr()
    for extra in ([], ["--beam", "1", "--lm-weight", "0"]):
        assert main(["transcribe", str(tmp_path / "x.wav"), "--model", str(bundle), "--json", *extra]) == 0
        assert "text" in json.loads(capsys.readouterr().out)


def test_lm_build_from_the_fortunes_train_split_records_its_source(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """--fortunes reads the corpus's text source (here a small stand-in); the card names it."""
    from framegate.engine.cli import main
    from framegate.export.corpus import text

    bundle, bpe, manifest = _tiny_bpe_bundle(tiny_checkpoint, tmp_path)
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    lines = [json.loads(line)["text"].capitalize() + "." for line in manifest.read_text().splitlines()]
    (fortunes / "tiny").write_text("\n%\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(text, "FORTUNE_DIR", fortunes)
    code = main(["lm", "build", "--bundle", str(bundle), "--bpe", str(bpe), "--fortunes", "--order", "3"])
    assert code == 0, capsys.readouterr().err
    card = json.loads((bundle / "bundle.json").read_text())["model_card"]["language_model"]
    assert card["source"].startswith(str(fortunes)) and card["sentences"] == len(text.training_text(fortunes))
    assert 0 < card["sentences"] < len(set(lines))  # dev and test sentences stay out
    monkeypatch.setattr(text, "FORTUNE_DIR", tmp_path / "absent")
    code = main(["lm", "build", "--bundle", str(bundle), "--bpe", str(bpe), "--fortunes"])
    assert code != 0 and "absent is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one text source, not both
        main(["lm", "build", "--bundle", str(bundle), "--bpe", str(bpe), "--fortunes", "--manifest", str(manifest)])


def test_lm_build_refuses_a_tokenizer_of_other_pieces_and_transcribe_an_lm_the_bundle_lacks(
        tiny_checkpoint, tiny_bundle, tmp_path, capsys):
    from framegate.engine.cli import main

    _, bpe, manifest = _tiny_bpe_bundle(tiny_checkpoint, tmp_path)
    code = main(["lm", "build", "--bundle", str(tiny_bundle), "--bpe", str(bpe), "--manifest", str(manifest)])
    assert code != 0 and "another token set" in capsys.readouterr().err
    assert not (tiny_bundle / "lm.npz").exists()
    code = main(["transcribe", str(manifest), "--model", str(tiny_bundle), "--lm-weight", "0.5"])
    assert code != 0 and "needs a language model" in capsys.readouterr().err
