"""The Python face of framegate's C++ kernels: typed wrappers and input validation.

``framegate.kernels.reference`` holds numba reference implementations for tests; it is never
imported from here, so the device path stays free of numba.
"""
from framegate.kernels.feature_window import FeatureWindow, FeatureWindowConfig

__all__ = ["FeatureWindow", "FeatureWindowConfig"]
