"""`framegate mic --from-file` in a real terminal (tmux): what a person sees, and Ctrl-C.

The command runs in a detached tmux pane (a real pseudo-terminal, so the in-place
partial line is drawn and keys are read); the test reads the screen, types keys,
presses Ctrl-C mid-file, and reads the command's exit status, which a wrapping bash
writes to a file (tmux's own pane_dead_status is sometimes empty for a pane that has
exited), beside the terminal's settings (`stty -g`) from before and after the command.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


PARTIAL = re.compile(r"^\[cpu +\d+% \| lag +\d+\.\d s \| dropped \d+\.\d\d s\] > \S", re.MULTILINE)
FINAL = re.compile(r"^\[ +(\d+\.\d\d) - +(\d+\.\d\d)\] \S", re.MULTILINE)


def dial_status(threshold: str) -> re.Pattern:
    """The in-place line of a gated bundle whose next chunk runs at `threshold`."""
    return re.compile(rf"^\[enc +\d+% parts +\d+% thr {re.escape(threshold)} \| lag +\d+\.\d s \| "
                      rf"dropped \d+\.\d\d s\] > ", re.MULTILINE)


class TmuxPane:
    """One detached tmux server (its own socket) running one command in a 150x20 pane."""

    def __init__(self, command: list[str], status_file: Path) -> None:
        assert shutil.which("tmux"), "tmux is missing: setup.sh installs it"
        self._base = ["tmux", "-L", f"framegate-test-{os.getpid()}", "-f", "/dev/null"]
        self._status_file = status_file
        stty = [status_file.with_name(f"stty_{when}") for when in ("before", "after")]
        self.stty_files = tuple(stty)
        # bash waits for a foreground child that handles SIGINT itself, then records its status.
        wrapped = (f"stty -g > {shlex.quote(str(stty[0]))}; {shlex.join(command)}; s=$?; "
                   f"stty -g > {shlex.quote(str(stty[1]))}; echo $s > {shlex.quote(str(status_file))}")
        self._tmux("new-session", "-d", "-s", "live", "-x", "150", "-y", "20", shlex.join(["bash", "-c", wrapped]))
        self._tmux("set-option", "-t", "live", "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        return subprocess.run([*self._base, *args], check=True, capture_output=True, text=True, timeout=30).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-S", "-", "-t", "live")  # with lines scrolled off

    def wait_for(self, pattern: re.Pattern, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if pattern.search(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{pattern.pattern!r} never appeared; screen:\n{self.screen()}")

    def press_ctrl_c(self) -> None:
        self._tmux("send-keys", "-t", "live", "C-c")

    def type_keys(self, keys: str) -> None:
        self._tmux("send-keys", "-t", "live", "-l", keys)

    def terminal_settings_restored(self) -> bool:
        """The terminal's settings after the command equal those before it (read once it exited)."""
        before, after = (path.read_text() for path in self.stty_files)
        return bool(before.strip()) and before == after

    def exit_status(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self._status_file.read_text() if self._status_file.exists() else ""
            if text.endswith("\n"):  # written in full once the command has exited
                return int(text)
            time.sleep(0.1)
        raise AssertionError(f"still running after Ctrl-C; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self._base, "kill-server"], capture_output=True, timeout=30)


def test_mic_from_file_shows_partial_then_final_lines_and_ctrl_c_exits_0(live_bundle: Path,
                                                                         two_utterances_wav: Path, tmp_path: Path):
    pane = TmuxPane([sys.executable, "-m", "framegate.engine.cli", "mic", "--from-file", str(two_utterances_wav),
                     "--model", str(live_bundle)], tmp_path / "status")
    try:
        pane.wait_for(PARTIAL, timeout_s=60)  # includes Python start-up and model load
        time.sleep(1.0)  # a little more speech, then the user stops the demo mid-file
        pane.press_ctrl_c()
        assert pane.exit_status(timeout_s=30) == 0
        screen = pane.screen()
        pane_restored = pane.terminal_settings_restored()
    finally:
        pane.close()
    finals = FINAL.findall(screen)
    assert finals, screen  # the partial shown at Ctrl-C became a final line
    end_s = float(finals[-1][1])
    assert 1.0 < end_s < 7.0, screen  # stopped mid-file (the file is 8.4 s)
    captured = re.search(r"^captured (\d+\.\d) s from file '.*fox_twice\.wav' at 22050 Hz", screen, re.MULTILINE)
    assert captured and abs(float(captured.group(1)) - end_s) <= 0.1, screen
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    assert pane_restored


def test_mic_from_file_with_a_gated_bundle_turns_the_threshold_with_keys(tiny_gated, two_utterances_wav: Path,
                                                                        tmp_path: Path):
    pane = TmuxPane([sys.executable, "-m", "framegate.engine.cli", "mic", "--from-file", str(two_utterances_wav),
                     "--model", str(tiny_gated["feature"][1])], tmp_path / "status")
    try:
        pane.wait_for(dial_status("0.50"), timeout_s=60)  # the bundle's default threshold
        pane.type_keys("]]]")
        pane.wait_for(dial_status("0.65"), timeout_s=10)
        pane.type_keys("-")
        pane.wait_for(dial_status("0.60"), timeout_s=10)
        pane.press_ctrl_c()
        assert pane.exit_status(timeout_s=30) == 0
        screen = pane.screen()
        restored = pane.terminal_settings_restored()
    finally:
        pane.close()
    assert screen.startswith("keys: + or ] raises the compute threshold"), screen
    assert re.search(r"^captured \d+\.\d s from file '.*fox_twice\.wav'", screen, re.MULTILINE), screen
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    assert restored  # cbreak mode is undone after Ctrl-C

