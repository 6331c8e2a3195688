"""The Python face of framegate's C++ kernels: typed wrappers and input validation.

``framegate.kernels.reference`` holds numba reference implementations for tests; it is never
imported from here, so the device path stays free of numba.
"""
from framegate.kernels.feature_window import FeatureWindow, FeatureWindowConfig
from framegate.kernels.global_cnn_state import GlobalCnn, GlobalCnnConfig

__all__ = ["FeatureWindow", "FeatureWindowConfig", "GlobalCnn", "GlobalCnnConfig"]
