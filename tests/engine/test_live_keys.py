"""Keys of the live demo: the compute dial's steps and bounds, and the terminal's cbreak mode.

The terminal tests use a pseudo-terminal pair (pty.openpty): keys are written on the
master side, read through `terminal_keys` on the slave side, whose termios settings are
compared before and after.
"""
from __future__ import annotations

import io
import os
import pty
import termios
from pathlib import Path

import pytest

from framegate.engine.compute_dial import GATED_ONLY, ComputeDial
from framegate.engine.recognizer import Recognizer
from framegate.engine.terminal_keys import printable_keys, terminal_keys


@pytest.mark.parametrize("start, keys, expected", [
    (0.5, "+", 0.55), (0.5, "=]", 0.6), (0.5, "-[", 0.4), (0.5, "x ?", 0.5),
    (0.98, "+", 1.0), (0.02, "[[", 0.0), (0.5, "+" * 30, 1.0),
])
def test_dial_steps_the_threshold_by_0_05_within_0_and_1(tiny_gated, start, keys, expected):
    stream = Recognizer(tiny_gated["feature"][1], compute_threshold=start).create_stream()
    dial = ComputeDial()
    assert all(dial.press(stream, key) is None for key in keys)
    assert stream.compute_threshold == expected


def test_dial_on_a_bundle_without_gates_says_so_once_and_changes_nothing(tiny_bundle: Path):
    stream = Recognizer(tiny_bundle).create_stream()
    dial = ComputeDial()
    assert dial.press(stream, "x") is None  # not a dial key: not worth a message
    assert dial.press(stream, "+") == GATED_ONLY
    assert [dial.press(stream, key) for key in "+-[]"] == [None] * 4
    assert stream.compute_threshold is None


def test_escape_sequences_are_not_keys():
    assert printable_keys(b"+\x1b[A]\x1bOP-\x1b[1;5C[\xff") == "+]-["  # arrows, F1, ctrl-right, bad byte


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    with os.fdopen(slave, "r", closefd=True) as slave_file:
        yield master, slave_file
    os.close(master)


@pytest.mark.parametrize("ending", [RuntimeError("decoder failed"), KeyboardInterrupt()])
def test_keys_are_read_at_once_and_the_terminal_is_restored_however_the_session_ends(pty_pair, ending):
    master, terminal = pty_pair
    before = termios.tcgetattr(terminal)
    with pytest.raises(type(ending)):
        with terminal_keys(terminal) as keys:
            lflag = termios.tcgetattr(terminal)[3]
            assert keys is not None and not lflag & termios.ICANON and not lflag & termios.ECHO
            assert lflag & termios.ISIG  # Ctrl-C still interrupts
            assert keys.read(0.01) == ""
            os.write(master, b"]")  # no Enter: cbreak mode hands over each key
            assert keys.read(2.0) == "]"
            raise ending
    assert termios.tcgetattr(terminal) == before


def test_no_keys_are_read_when_stdin_is_not_a_terminal():
    read_end, write_end = os.pipe()
    os.close(write_end)
    with os.fdopen(read_end) as pipe, terminal_keys(pipe) as from_pipe, terminal_keys(io.StringIO()) as from_text:
        assert from_pipe is None and from_text is None
