"""The device path stays light: importing the engine loads no training or plotting stack."""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "numba", "matplotlib", "sklearn", "sounddevice"]


def test_engine_imports_load_no_heavy_modules():
    code = (
        "import sys, json\n"
        "import framegate.engine, framegate.engine.cli, framegate.engine.recognizer, framegate.engine.offline\n"
        "import framegate.engine.mic, framegate.engine.live, framegate.engine.capture, framegate.engine.recording\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == []
