"""Offline, deterministic synthetic speech corpus: text -> voices -> synthesis -> augmentation -> manifests."""

from framegate.engine.errors import FramegateError


class CorpusError(FramegateError):
    """The corpus cannot be built: a synthesizer or voice is missing or failed."""


__all__ = ["CorpusError"]
