"""Deterministic waveform augmentation: every random choice comes from the numpy Generator passed in.

Real recorded speakers are few, so speed, frequency warp and room/noise/microphone effects turn each
into many; clean copies stay common so the model also sees the undistorted voice.
"""

import numpy as np
import soxr

SAMPLE_RATE = 16000
CLEAN_PROBABILITY = 0.3


def speed_perturb(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together), as in Kaldi's 0.9/1.0/1.1 perturbation."""
    return soxr.resample(samples, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def time_stretch(samples: np.ndarray, n_out: int, frame: int = 512, tolerance: int = 128) -> np.ndarray:
    """Change the duration to `n_out` samples at constant pitch (WSOLA: overlap-add of waveform-aligned frames)."""
    hop = frame // 2
    window = np.hanning(frame + 1)[:frame]  # periodic Hann: sums to 1 at half-frame hop
    padded = np.pad(samples.astype(np.float64), (tolerance, frame + 2 * tolerance + hop))
    step_in = len(samples) / max(n_out, 1) * hop
    out = np.zeros(n_out + frame, dtype=np.float64)
    previous = tolerance
    for k in range(n_out // hop + 1):
        nominal = tolerance + int(round(k * step_in))
        if k == 0:
            start = nominal
        else:
            target = padded[previous + hop : previous + hop + frame]
            region = padded[nominal - tolerance : nominal + tolerance + frame]
            energy = np.convolve(region**2, np.ones(frame), mode="valid")
            similarity = np.correlate(region, target, mode="valid") / np.sqrt(energy + 1e-9)
            start = nominal - tolerance + int(np.argmax(similarity))
        out[k * hop : k * hop + frame] += padded[start : start + frame] * window
        previous = start
    return out[:n_out].astype(np.float32)


def frequency_warp(samples: np.ndarray, alpha: float) -> np.ndarray:
    """Scale every frequency (formants, i.e. vocal-tract length, and pitch) by `alpha` at constant duration."""
    return time_stretch(speed_perturb(samples, alpha), len(samples))


def coloured_noise(n_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white, pink (1/f power) or brown (1/f^2 power) noise."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, 1 / SAMPLE_RATE)
    spectrum *= 1 / np.maximum(freqs, 20.0) ** (exponent / 2)
    noise = np.fft.irfft(spectrum, n=n_samples)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def babble(n_samples: int, bank: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS sum of 3-6 randomly offset utterances from `bank` (other speech of the same split)."""
    mix = np.zeros(n_samples, dtype=np.float32)
    for _ in range(int(rng.integers(3, 7))):
        source = bank[int(rng.integers(len(bank)))]
        tiled = np.tile(source, n_samples // len(source) + 2)
        start = int(rng.integers(len(source)))
        mix += tiled[start : start + n_samples] / (np.sqrt(np.mean(source**2)) + 1e-12)
    return mix / (np.sqrt(np.mean(mix**2)) + 1e-12)


def add_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix unit-RMS `noise` into `samples` at `snr_db` relative to the speech RMS."""
    speech_rms = np.sqrt(np.mean(samples**2)) + 1e-12
    return (samples + noise * speech_rms / 10 ** (snr_db / 20)).astype(np.float32)


def reverberate(samples: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise impulse response (a direct path plus a diffuse tail)."""
    n_taps = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n_taps) / SAMPLE_RATE
    response = rng.standard_normal(n_taps) * np.exp(-6.9 * t / rt60_s) * 0.3
    response[0] = 1.0
    n_fft = 1 << int(np.ceil(np.log2(len(samples) + n_taps)))
    wet = np.fft.irfft(np.fft.rfft(samples, n_fft) * np.fft.rfft(response, n_fft), n_fft)[: len(samples)]
    return (wet * np.sqrt(np.sum(samples**2) / (np.sum(wet**2) + 1e-12))).astype(np.float32)


def band_limit(samples: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """A cheap microphone or phone line: keep `low_hz`..`high_hz` with 100 Hz cosine edges."""
    spectrum = np.fft.rfft(samples)
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    rise = np.clip((freqs - (low_hz - 100)) / 100, 0, 1) if low_hz > 0 else np.ones_like(freqs)
    fall = np.clip(((high_hz + 100) - freqs) / 100, 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * rise * fall)
    return np.fft.irfft(spectrum * gain, n=len(samples)).astype(np.float32)


def normalize_peak(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """Set the peak to `gain_db` dBFS (<= -0.5 so 16-bit output never clips)."""
    peak = np.max(np.abs(samples)) + 1e-12
    return (samples * 10 ** (min(gain_db, -0.5) / 20) / peak).astype(np.float32)


def augment(samples: np.ndarray, rng: np.random.Generator, babble_bank: list[np.ndarray], recorded_voice: bool) -> np.ndarray:
    """A random chain of the effects above; about `CLEAN_PROBABILITY` of outputs only change level.

    `recorded_voice` raises the frequency-warp probability: there are few real speakers to multiply.
    """
    if rng.random() >= CLEAN_PROBABILITY:
        if rng.random() < 0.3:
            samples = speed_perturb(samples, rng.uniform(0.9, 1.1))
        if rng.random() < (0.5 if recorded_voice else 0.15):
            samples = frequency_warp(samples, rng.uniform(0.88, 1.12))
        if rng.random() < 0.25:
            samples = reverberate(samples, rng.uniform(0.15, 0.7), rng)
        if rng.random() < 0.4:
            kind = str(rng.choice(["white", "pink", "brown", "babble"]))
            noise = babble(len(samples), babble_bank, rng) if kind == "babble" else coloured_noise(len(samples), kind, rng)
            samples = add_noise(samples, noise, rng.uniform(5.0, 30.0))
        if rng.random() < 0.15:
            samples = band_limit(samples, *((300.0, 3400.0) if rng.random() < 0.5 else (0.0, 4000.0)))
    return normalize_peak(samples, rng.uniform(-20.0, -1.0))
