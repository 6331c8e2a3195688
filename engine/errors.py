"""The error hierarchy every public entry point raises; the CLI turns it into one line."""


class FramegateError(Exception):
    """Base class: anything framegate refuses, with a message naming the problem."""


class BundleError(FramegateError):
    """A model bundle is missing, corrupt, of another format version or inconsistent."""


class AudioInputError(FramegateError):
    """Audio that cannot be used: empty, NaN/Inf, wrong shape or type, unreadable file."""


class AudioDeviceError(FramegateError):
    """A capture device is missing, busy, unplugged or cannot run at a usable rate."""


class ComputeSettingError(FramegateError, ValueError):
    """A compute threshold that cannot be used: not a number in [0, 1], or the bundle is not gated."""


class SearchSettingError(FramegateError, ValueError):
    """Search settings that cannot be used: a beam below 1, a negative LM weight, an LM weight
    for a bundle without a language model."""
