"""Microphone capture through sounddevice (PortAudio), at the device's native rate.

sounddevice is imported only here, inside the functions that need it, so
`import framegate.engine` never loads PortAudio. The PortAudio callback copies each
block into a `CaptureBuffer` and returns: it never waits for the decoder. Resampling to
16 kHz happens downstream in the stream (`Stream.accept_waveform`), so the device runs
at whatever rate it prefers.

Every PortAudio failure becomes an `AudioDeviceError` with one sentence a user can act
on: no input device, an unknown device, a device busy in another program, a rate or
channel count the device refuses, a device that stops delivering audio mid-stream.
"""
from __future__ import annotations

import threading
from types import ModuleType

import numpy as np

from framegate.engine.capture import DEFAULT_CAPACITY_S, CaptureBuffer
from framegate.engine.errors import AudioDeviceError

BLOCK_S = 0.02  # 20 ms blocks: small enough for a responsive partial, large enough for Python

# PortAudio's PaErrorCode values (portaudio.h), mapped to what the user can do about them.
_PA_ERRORS = {
    -9996: "is not a valid input device (see 'framegate mic --list-devices')",  # paInvalidDevice
    -9985: "is busy or unavailable (another program may be using it)",  # paDeviceUnavailable
    -9997: "cannot record at {rate} Hz, the native rate it reports",  # paInvalidSampleRate
    -9998: "cannot record one channel",  # paInvalidChannelCount
    -9994: "does not support 32-bit float samples",  # paSampleFormatNotSupported
    -9987: "timed out",  # paTimedOut
}
_PA_UNANTICIPATED_HOST_ERROR = -9999


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when libportaudio is missing
        raise AudioDeviceError(f"audio capture is unavailable: {e} (install libportaudio2)") from None
    return sounddevice


def _device_error(error: Exception, what: str, rate: int | None = None) -> AudioDeviceError:
    """One sentence for a PortAudio error (args: message, PaErrorCode, host error info)."""
    args = error.args
    code = args[1] if len(args) > 1 else None
    if code in _PA_ERRORS:
        return AudioDeviceError(f"{what} {_PA_ERRORS[code].format(rate=rate)}")
    detail = str(args[0]) if args else type(error).__name__
    if code == _PA_UNANTICIPATED_HOST_ERROR and len(args) > 2:
        host_text = str(args[2][2])
        if "busy" in host_text.lower():  # ALSA reports a busy device as EBUSY through the host API
            return AudioDeviceError(f"{what} {_PA_ERRORS[-9985]}")
        detail = f"{detail}: {host_text}"
    return AudioDeviceError(f"{what} cannot be used ({detail})")


def parse_device(text: str | None) -> int | str | None:
    """A --device argument: an index as listed by --list-devices, or part of a device name."""
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text


def list_input_devices() -> list[str]:
    """One line per device that can record: index, name, channels, native rate; default marked."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        default_input = sd.default.device[0]
    except sd.PortAudioError as e:
        raise _device_error(e, "the audio system") from None
    return [f"{'*' if d['index'] == default_input else ' '} {d['index']:3d}  {d['name']}  "
            f"({d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz)"
            for d in devices if d['max_input_channels'] > 0]


class DeviceSource:
    """A sound card feeding a `CaptureBuffer` from PortAudio's callback.

    `device` is an index, part of a name, or None for the system's default input.
    The device opens at its native rate (`sample_rate`), mono float32, `BLOCK_S` blocks.
    """

    def __init__(self, device: int | str | None, capacity_s: float = DEFAULT_CAPACITY_S) -> None:
        self._sd = sd = _sounddevice()
        what = "the default audio input device" if device is None else f"audio input device {device!r}"
        try:
            info = sd.query_devices(device, "input")
        except sd.PortAudioError as e:
            if device is None:
                raise AudioDeviceError("no audio input device found (no sound card or microphone; "
                                       "use --from-file FILE to run from a file)") from None
            raise AudioDeviceError(f"{what} not found ({e.args[0] if e.args else e}; "
                                   "see 'framegate mic --list-devices')") from None
        except ValueError as e:  # no device matches the name, or it cannot record
            raise AudioDeviceError(f"{what}: {e} (see 'framegate mic --list-devices')") from None
        self.sample_rate = round(info["default_samplerate"])
        self.description = f"'{info['name']}' at {self.sample_rate} Hz"
        self.buffer = CaptureBuffer(self.sample_rate, capacity_s)
        self._what = f"audio input device '{info['name']}'"
        self._stopping = threading.Event()
        try:
            self._stream = sd.InputStream(device=info["index"], samplerate=self.sample_rate, channels=1,
                                          dtype="float32", blocksize=round(BLOCK_S * self.sample_rate),
                                          callback=self._callback, finished_callback=self._finished)
        except sd.PortAudioError as e:
            raise _device_error(e, self._what, self.sample_rate) from None

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        """PortAudio's real-time thread: copy and hand over, nothing that can wait."""
        self.buffer.push(indata[:, 0].copy(), overflowed=bool(status.input_overflow))

    def _finished(self) -> None:
        """PortAudio ended the stream: our own stop, or the device went away."""
        if self._stopping.is_set():
            self.buffer.finish()
        else:
            self.buffer.finish(AudioDeviceError(
                f"{self._what} stopped delivering audio after {self.buffer.stats().captured_s:.1f} s "
                "(unplugged?)"))

    def start(self) -> None:
        try:
            self._stream.start()
        except self._sd.PortAudioError as e:
            self._stream.close()
            raise _device_error(e, self._what, self.sample_rate) from None

    def stop(self) -> None:
        """Stop and close the device (idempotent); audio already captured stays in the buffer."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self._stream.close()  # stops the stream; its finished callback finishes the buffer
        except self._sd.PortAudioError:
            pass  # a device that vanished cannot be closed cleanly; it is released either way
        self.buffer.finish()
