"""A Kneser-Ney n-gram language model over a bundle's BPE pieces, written as ARPA.

Shallow fusion in the engine's beam search (engine/token_lm.py) scores each emitted piece
with it: pieces are the unit the transducer emits, so no lexicon or word-to-piece mapping is
needed, and an order of 5-6 pieces spans the last word or two, which is what penalizes the
misspelled near-words a purely acoustic search produces. Interpolated Kneser-Ney with one
discount per order (D = n1 / (n1 + 2 n2)) is written in ARPA's back-off form exactly (every
stored probability is the interpolated one, every back-off weight the interpolation mass), so
any ARPA reader, KenLM's included, computes the same probabilities. Train it on training
text only: held-out sentences in the LM would leak the test set.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framegate.engine.bundle import Bundle

BOS, EOS = "<s>", "</s>"
NO_PROBABILITY_LOG10 = -99.0  # ARPA's convention for <s>, which is only ever a context


def _discount(counts: Counter) -> float:
    """Ney's discount from the counts of counts; 0.5 when too few n-grams to estimate it."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def _ngram_counts(sentences: list[Sequence[str]], order: int) -> list[Counter]:
    """Per order, the counts Kneser-Ney estimates from: raw counts for the highest order and
    for n-grams that begin with <s> (nothing precedes them), continuation counts otherwise."""
    raw = [Counter() for _ in range(order)]
    for words in sentences:
        seq = (BOS, *words, EOS)
        for end in range(1, len(seq)):
            for n in range(1, min(order, end + 1) + 1):
                raw[n - 1][seq[end + 1 - n:end + 1]] += 1
    counts = [Counter() for _ in range(order)]
    counts[order - 1] = raw[order - 1]
    for k in range(order - 1):
        left_neighbours = Counter(gram[1:] for gram in raw[k + 1])
        for gram, c in raw[k].items():
            counts[k][gram] = c if gram[0] == BOS else left_neighbours[gram]
    return counts


def estimate(sentences: list[Sequence[str]], vocabulary: Sequence[str], order: int) -> dict:
    """Interpolated Kneser-Ney: {n-gram: (log10 probability, log10 back-off or None)}.

    `vocabulary`: every word the model must give a probability (words never seen in the
    text get the unigram's share of the uniform distribution)."""
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    if not sentences:
        raise ValueError("no sentences to estimate a language model from")
    counts = _ngram_counts(sentences, order)
    discounts = [_discount(c) for c in counts]
    totals = [defaultdict(int) for _ in range(order)]    # sum of counts over words, per context
    distinct = [defaultdict(int) for _ in range(order)]  # words seen after each context
    for k, c in enumerate(counts):
        for gram, n in c.items():
            totals[k][gram[:-1]] += n
            distinct[k][gram[:-1]] += 1
    words = [w for w in dict.fromkeys([*vocabulary, EOS]) if w != BOS]
    d0, total0 = discounts[0], totals[0][()]
    gamma0 = d0 * distinct[0][()] / total0
    prob: dict[tuple[str, ...], float] = {
        (w,): max(counts[0][(w,)] - d0, 0.0) / total0 + gamma0 / len(words) for w in words}
    gammas: dict[tuple[str, ...], float] = {}
    for k in range(1, order):
        d = discounts[k]
        for gram, n in counts[k].items():  # gram[1:] is one order down: already done
            context = gram[:-1]
            gamma = gammas.setdefault(context, d * distinct[k][context] / totals[k][context])
            prob[gram] = max(n - d, 0.0) / totals[k][context] + gamma * prob[gram[1:]]
    model = {gram: (math.log10(p), None) for gram, p in prob.items()}
    model[(BOS,)] = (NO_PROBABILITY_LOG10, None)
    for context, gamma in gammas.items():
        logp, _ = model[context]
        model[context] = (logp, math.log10(gamma))
    return model


def write_arpa(model: dict, path: Path) -> None:
    """ARPA text: the \\data\\ header, then each order's n-grams, sorted."""
    by_order: dict[int, list] = defaultdict(list)
    for gram, entry in model.items():
        by_order[len(gram)].append((gram, entry))
    lines = ["", "\\data\\"] + [f"ngram {n}={len(by_order[n])}" for n in sorted(by_order)]
    for n in sorted(by_order):
        lines += ["", f"\\{n}-grams:"]
        for gram, (logp, backoff) in sorted(by_order[n]):
            row = f"{logp:.6f}\t{' '.join(gram)}"
            lines.append(row if backoff is None else f"{row}\t{backoff:.6f}")
    lines += ["", "\\end\\", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def add_to_bundle(bundle_dir: Path, bpe_model: Path, texts: Sequence[str], source: str, order: int,
                  search: dict, arpa: Path | None = None) -> Path:
    """Estimate the LM on `texts` (training text only; `source` names it in the model card) in
    the bundle's pieces and attach it (`attach`); also write it as ARPA when `arpa` is given."""
    from framegate.engine.bundle import Bundle
    from framegate.export.tokenizer import load_bpe

    bundle = Bundle.load(bundle_dir)
    sp = load_bpe(bpe_model)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if pieces != bundle.tokens:
        raise ValueError(f"{bpe_model} does not make the pieces of {bundle_dir}/tokens.txt (another token set)")
    sentences = [sp.encode(text, out_type=str) for text in texts if text]
    emitting = [p for i, p in enumerate(pieces) if i not in (bundle.decoder.blank_id, bundle.unk_id)]
    ngrams = estimate(sentences, emitting, order)
    if arpa is not None:
        write_arpa(ngrams, arpa)
    return attach(bundle, ngrams, search, {"order": order, "sentences": len(sentences), "source": source})


def attach(bundle: Bundle, ngrams: dict, search: dict, provenance: dict) -> Path:
    """Store `ngrams` compiled as the loaded bundle's lm.npz and make beam search with it its
    search (bundle.json `search`: `search`'s beam, lm_weight, token_bonus, and the file)."""
    from framegate.engine.beam_search import configured_search
    from framegate.engine.bundle import Bundle
    from framegate.engine.token_lm import TokenLm
    from framegate.engine.bundle import file_record

    bundle_dir = bundle.path
    TokenLm.from_ngrams(ngrams, bundle.tokens).save(bundle_dir / "lm.npz")
    config = {key: value for key, value in bundle.manifest.items() if key != "search"}
    files = {**config.pop("files"), "lm.npz": file_record(bundle_dir / "lm.npz")}
    card = {**config.pop("model_card", {}), "language_model": provenance}
    config |= {"search": {**search, "lm": "lm.npz"}, "files": files, "model_card": card}
    (bundle_dir / "bundle.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    configured_search(Bundle.load(bundle_dir))  # what was written loads and searches
    return bundle_dir / "lm.npz"
