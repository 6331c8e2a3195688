"""An ARPA back-off n-gram over a bundle's token pieces, scored a whole vocabulary at a time.

The beam search (engine/beam_search.py) needs, for each hypothesis, the log-probability of
every piece it could emit next. Walking the back-off chain once per context gives that whole
vector: start from the unigrams, and for each longer suffix of the context that the model
knows, add its back-off weight and overwrite the pieces seen after it. Each order is a sorted
array of integer-coded n-grams (no Python object per n-gram: a few MB for a corpus-sized
model); the walk itself runs in C++ (framegate.kernels.token_lm), about a microsecond a
context, so the beam scores every hypothesis's context afresh each frame without a cache.
The ARPA's words are the pieces of the bundle's tokens.txt, `<s>` and `</s>`; any ARPA file
over those pieces works (export/token_lm.py writes one, KenLM's lmplz can too).
"""
from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from framegate.engine.errors import BundleError
from framegate.kernels.token_lm import NativeTokenLm, Table

LN10 = math.log(10.0)
BOS, EOS = "<s>", "</s>"


def _read_arpa(path: Path) -> dict[int, list[tuple[float, list[str], float]]]:
    """Each order's rows: (log10 probability, words, log10 back-off)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"language model {path}: cannot read it ({exc})") from exc
    declared: dict[int, int] = {}
    rows: dict[int, list] = {}
    order = 0
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line == "\\data\\":
            continue
        if line == "\\end\\":
            break
        if line.startswith("ngram "):
            n, _, count = line[6:].partition("=")
            declared[int(n)] = int(count)
        elif line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1:-7])
            rows[order] = []
        elif order:
            fields = line.split()
            if len(fields) not in (order + 1, order + 2):
                raise BundleError(f"language model {path}, line {number}: expected a {order}-gram row")
            backoff = float(fields[order + 1]) if len(fields) == order + 2 else 0.0
            rows[order].append((float(fields[0]), fields[1:order + 1], backoff))
    if not declared or sorted(declared) != list(range(1, len(declared) + 1)):
        raise BundleError(f"language model {path}: not an ARPA file (no \\data\\ section with ngram 1=...)")
    for n, count in declared.items():
        if len(rows.get(n, ())) != count:
            raise BundleError(f"language model {path}: header says {count} {n}-grams, "
                              f"the file has {len(rows.get(n, ()))} (truncated?)")
    return rows


def _tables(rows: dict[int, list[tuple[float, list[str], float]]], tokens: list[str], source: str) -> list[Table]:
    """Orders 1..n: sorted n-gram keys, natural-log probabilities, natural-log back-offs (none
    for the highest order), from rows of (log10 probability, words, log10 back-off)."""
    if sorted(rows) != list(range(1, len(rows) + 1)):
        raise BundleError(f"language model {source}: orders {sorted(rows)} are not 1..n")
    ids = {piece: i for i, piece in enumerate(tokens)} | {BOS: len(tokens), EOS: len(tokens) + 1}
    unknown = sorted({w for n in rows for _, words, _ in rows[n] for w in words if w not in ids})
    if unknown:
        raise BundleError(f"language model {source}: words that are not the bundle's pieces, "
                          f"e.g. {unknown[:5]} (built for another token set?)")
    base = len(tokens) + 2
    tables = []
    for n in sorted(rows):
        entries = rows[n]
        keys = np.array([_key([ids[w] for w in words], base) for _, words, _ in entries], dtype=np.int64)
        order = np.argsort(keys)
        logp = (np.array([e[0] for e in entries]) * LN10)[order].astype(np.float32)
        backoff = (np.array([e[2] for e in entries]) * LN10)[order].astype(np.float32)
        tables.append((keys[order], logp, backoff if n < len(rows) else backoff[:0]))
    return tables


def _key(ids: list[int] | tuple[int, ...], base: int) -> int:
    """An n-gram as one integer, its ids the digits in `base` (unique within one order)."""
    key = 0
    for i in ids:
        key = key * base + i
    return key


class TokenLm:
    """log P(piece | context) for every piece at once; contexts are tuples of token ids,
    starting with `bos` at the start of an utterance. Bundles carry it compiled (lm.npz:
    the sorted tables, loaded without parsing); `from_arpa` reads any ARPA over the pieces."""

    def __init__(self, tables: Iterable[Table], tokens: list[str], source: str) -> None:
        """`tables`: orders 1..n in turn, each (keys, logp, backoff; backoff empty for the
        highest order). Each is copied into the native model as it comes, so a generator
        that loads one order at a time never holds the whole model twice."""
        self.tokens = list(tokens)
        self.vocab_size = len(tokens)
        self.bos, self.eos = self.vocab_size, self.vocab_size + 1
        try:
            self._native = NativeTokenLm(tables, self.vocab_size)
        except ValueError as exc:
            raise BundleError(f"language model {source}: {exc}") from None
        self.order = self._native.order

    @classmethod
    def from_arpa(cls, path: str | Path, tokens: list[str]) -> TokenLm:
        return cls(_tables(_read_arpa(Path(path)), tokens, str(path)), tokens, str(path))

    @classmethod
    def from_ngrams(cls, ngrams: dict[tuple[str, ...], tuple[float, float | None]], tokens: list[str]) -> TokenLm:
        """From {n-gram: (log10 probability, log10 back-off or None)}, as ARPA would hold them."""
        rows: dict[int, list] = {}
        for words, (logp, backoff) in ngrams.items():
            rows.setdefault(len(words), []).append((logp, list(words), 0.0 if backoff is None else backoff))
        return cls(_tables(rows, tokens, "(estimated)"), tokens, "(estimated)")

    @classmethod
    def load(cls, path: str | Path, tokens: list[str]) -> TokenLm:
        """A compiled model (`save`); refused if it was built over other pieces than `tokens`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if "pieces" not in data.files or data["pieces"].tolist() != list(tokens):
                    raise BundleError(f"language model {path}: built over other pieces than the bundle's tokens.txt")
                orders = sorted(int(name[4:]) for name in data.files if name.startswith("keys"))
                if orders != list(range(1, len(orders) + 1)):
                    raise BundleError(f"language model {path}: orders {orders} are not 1..n")
                needed = [f"{kind}{n}" for n in orders for kind in ("keys", "logp", "backoff")][:-1]
                missing = [name for name in needed if name not in data.files]
                if missing:
                    raise BundleError(f"language model {path}: table '{missing[0]}' is missing")

                def table(n: int) -> Table:  # the highest order backs off to nothing: no back-off stored
                    return (data[f"keys{n}"], data[f"logp{n}"],
                            data[f"backoff{n}"] if n < orders[-1] else np.zeros(0, dtype=np.float32))

                return cls((table(n) for n in orders), tokens, str(path))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleError(f"language model {path}: not a compiled framegate LM ({exc})") from exc

    def save(self, path: str | Path) -> None:
        arrays = {"pieces": np.array(self.tokens)}
        for n, (keys, logp, backoff) in enumerate(self._native.tables(), start=1):
            arrays |= {f"keys{n}": keys, f"logp{n}": logp}
            if n < self.order:
                arrays[f"backoff{n}"] = backoff
        np.savez_compressed(path, **arrays)

    def initial_context(self) -> tuple[int, ...]:
        return (self.bos,)

    def next_context(self, context: tuple[int, ...], token: int) -> tuple[int, ...]:
        return (*context, token)[-(self.order - 1):] if self.order > 1 else ()

    def scores(self, context: tuple[int, ...]) -> np.ndarray:
        """Natural-log probabilities of every id (pieces, then <s>, </s>) after `context`."""
        return self._native.scores_batch([context])[0]

    def scores_batch(self, contexts: list[tuple[int, ...]]) -> np.ndarray:
        """`scores` of each context, one row each: (len(contexts), vocab_size + 2)."""
        return self._native.scores_batch(contexts)
