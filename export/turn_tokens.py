"""The turn tokens `<sot>` and `<eot>` appended to a single-speaker vocabulary.

Appending (rather than retraining the BPE) keeps every existing piece at its id, so the
single-speaker model's embedding, joiner and CTC rows carry over to the STS model as they
are (export/models/sts.py `warm_start_state`). In the sentencepiece model the two pieces
are USER_DEFINED: text never encodes to them; the training data inserts them by id.
"""
from __future__ import annotations

from pathlib import Path

from framegate.export.models.sts import EOT_PIECE, SOT_PIECE

TURN_PIECES = (SOT_PIECE, EOT_PIECE)


def extend_bpe(source: Path, target: Path) -> int:
    """Write `source`'s sentencepiece model with <sot>, <eot> appended to `target`; the new size.

    A source that already ends with the two pieces is copied unchanged (extending twice
    would give them new ids)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(Path(source).read_bytes())
    pieces = [p.piece for p in proto.pieces]
    if any(p in pieces for p in TURN_PIECES):
        if pieces[-2:] != list(TURN_PIECES):
            raise ValueError(f"{source}: has {SOT_PIECE}/{EOT_PIECE} but not as its last two pieces")
    else:
        for piece in TURN_PIECES:
            new = proto.pieces.add()
            new.piece, new.score, new.type = piece, 0.0, model_pb2.ModelProto.SentencePiece.USER_DEFINED
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(proto.SerializeToString())
    return len(proto.pieces)


def extend_tokens_txt(source: Path, target: Path) -> int:
    """A bundle's tokens.txt with <sot>, <eot> appended (unchanged when already there); the new size."""
    lines = [ln for ln in Path(source).read_text(encoding="utf-8").splitlines() if ln.strip()]
    pieces = [ln.rsplit(" ", 1)[0] for ln in lines]
    if pieces[-2:] != list(TURN_PIECES):
        if any(p in pieces for p in TURN_PIECES):
            raise ValueError(f"{source}: has {SOT_PIECE}/{EOT_PIECE} but not as its last two pieces")
        lines += [f"{piece} {len(lines) + i}" for i, piece in enumerate(TURN_PIECES)]
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
