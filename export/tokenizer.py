"""BPE tokens: sentencepiece trained on the training text, written as a bundle's tokens.txt.

Id 0 is the blank `<blk>` (also used as padding) and id 1 `<unk>`, as the sherpa-onnx
contract expects; the engine reads only tokens.txt, never sentencepiece.
"""
from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm

BLANK_ID = 0


def train_bpe(sentences: list[str], model_path: Path, vocab_size: int) -> spm.SentencePieceProcessor:
    """Train a BPE model on normalized sentences and save it to `model_path` (.model)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0, pad_id=BLANK_ID, pad_piece="<blk>",
        unk_id=1, bos_id=-1, eos_id=-1, input_sentence_size=2_000_000, shuffle_input_sentence=True,
        num_threads=2, minloglevel=2)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(model.getvalue())
    return load_bpe(model_path)


def load_bpe(model_path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(model_path))


def write_tokens_txt(sp: spm.SentencePieceProcessor, path: Path) -> None:
    lines = [f"{sp.id_to_piece(i)} {i}" for i in range(sp.get_piece_size())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
