"""framegate's device runtime: bundles, streams, features, decoding and the CLI.

Importing this package loads no torch, numba, matplotlib, scikit-learn or sounddevice:
the device path stays light (DESIGN.md contracts).
"""
from framegate.engine.errors import AudioInputError, BundleError, FramegateError

__all__ = ["AudioInputError", "BundleError", "FramegateError"]
