"""Microphone capture through sounddevice (PortAudio), at the device's native rate.

sounddevice is imported only here, inside the functions that need it, so
`import framegate.engine` never loads PortAudio. The PortAudio callback copies each
block into a `CaptureBuffer` and returns: it never waits for the decoder. Resampling to
16 kHz happens downstream in the stream (`Stream.accept_waveform`), so the device runs
at whatever rate it prefers.

Every PortAudio failure becomes an `AudioDeviceError` with one sentence a user can act
on: no input device, an unknown device, a device busy in another program, a rate or
channel count the device refuses, a device that stops delivering audio mid-stream and
does not come back. A device lost mid-stream is first reopened a few times with backoff
(`DeviceSource`): a USB microphone plugged back in, or a sound server restarted, only
costs the audio of the time it was away, which is counted and shown.
"""
from __future__ import annotations

import queue
import threading
import time
from types import ModuleType

import numpy as np

from framegate.engine.capture import DEFAULT_CAPACITY_S, CaptureBuffer
from framegate.engine.errors import AudioDeviceError

BLOCK_S = 0.02  # 20 ms blocks: small enough for a responsive partial, large enough for Python
RECONNECT_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0)  # waits before each attempt to reopen a lost device

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


def _refresh_device_list(sd: ModuleType) -> None:
    """Re-initialize PortAudio so a device plugged back in is found: PortAudio enumerates devices
    only when it initializes (the workaround sounddevice's maintainer gives in its issue #125).
    Safe only while this process has no open stream, as during a reconnection."""
    if sd._initialized:
        sd._terminate()
    sd._initialize()


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

    A device lost mid-stream (PortAudio ends the stream unasked, as when it is unplugged)
    is reopened by name after each of `RECONNECT_DELAYS_S`; meanwhile the buffer shows it
    as reconnecting and counts the time away as a gap. If it does not come back, the
    buffer ends with an AudioDeviceError saying so. After `start`, one supervising thread
    makes every open, start and close, so no two PortAudio calls on a stream ever race.
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
        self._name = info["name"]
        self._what = f"audio input device '{info['name']}'"
        self._stopping = threading.Event()
        # Each stream's finished callback posts the stream's generation here; the supervisor
        # bumps the generation before it closes a stream itself, so only a loss matches.
        self._generation = 0
        self._finished_streams: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._supervisor: threading.Thread | None = None
        try:
            self._stream = self._open(info["index"])
        except sd.PortAudioError as e:
            raise _device_error(e, self._what, self.sample_rate) from None

    def _open(self, index: int):
        """An InputStream on device `index` whose finished callback names the stream's generation."""
        generation = self._generation
        return self._sd.InputStream(device=index, samplerate=self.sample_rate, channels=1, dtype="float32",
                                    blocksize=round(BLOCK_S * self.sample_rate), callback=self._callback,
                                    finished_callback=lambda: self._finished_streams.put(generation))

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        """PortAudio's real-time thread: copy and hand over, nothing that can wait."""
        self.buffer.push(indata[:, 0].copy(), overflowed=bool(status.input_overflow))

    def _close(self, stream) -> None:
        """Close `stream`; its finished callback, if PortAudio calls it, is not a lost device."""
        self._generation += 1
        try:
            stream.close()  # stops the stream first
        except self._sd.PortAudioError:
            pass  # a device that vanished cannot be closed cleanly; it is released either way

    def start(self) -> None:
        try:
            self._stream.start()
        except self._sd.PortAudioError as e:
            self._close(self._stream)
            raise _device_error(e, self._what, self.sample_rate) from None
        self._supervisor = threading.Thread(target=self._supervise, name="framegate-mic", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        """Wait for the current stream to end: reopen a lost device; at stop, close and finish."""
        failure = None
        while failure is None and not self._stopping.is_set():
            if self._finished_streams.get() == self._generation:  # None (stop) or a stream we closed: no
                failure = self._reconnect()
        self._close(self._stream)
        self.buffer.finish(failure)

    def _reconnect(self) -> AudioDeviceError | None:
        """Reopen the lost device by name after each of RECONNECT_DELAYS_S; the error if it never returns."""
        lost_at, captured_s = time.perf_counter(), self.buffer.stats().captured_s
        self.buffer.device_lost()
        self._close(self._stream)
        for delay in RECONNECT_DELAYS_S:
            if self._stopping.wait(delay):
                return None
            try:
                _refresh_device_list(self._sd)
                stream = self._open(self._sd.query_devices(self._name, "input")["index"])
            except (self._sd.PortAudioError, ValueError):  # not back yet, or no longer found by its name
                continue
            try:
                stream.start()
            except self._sd.PortAudioError:
                self._close(stream)
                continue
            self._stream = stream
            self.buffer.device_back(round((time.perf_counter() - lost_at) * self.sample_rate))
            return None
        return AudioDeviceError(f"{self._what} stopped delivering audio after {captured_s:.1f} s (unplugged?) "
                                f"and was not back within {sum(RECONNECT_DELAYS_S):.0f} s")

    def stop(self) -> None:
        """Stop and close the device (idempotent); audio already captured stays in the buffer."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._supervisor is None:  # never started (or failed to)
            self._close(self._stream)
            self.buffer.finish()
            return
        self._finished_streams.put(None)  # wakes the supervisor, which closes the stream
        self._supervisor.join()
