"""Property tests for the bundle loader: any corruption is a BundleError, never another exception.

Hypothesis edits one field of bundle.json (any path, any JSON value, or deletes it) or damages
the bytes of one graph (flips, truncation, insertion; checksums refreshed so the damage reaches
ONNX Runtime and the graph checks). The loader must refuse with a BundleError or load; a bundle
that loads must then transcribe (or refuse audio with a FramegateError): a field the loader lets
through must not crash the first stream.
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framegate.engine.bundle import Bundle
from framegate.engine.errors import BundleError, FramegateError
from framegate.engine.recognizer import Recognizer

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])

JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.sampled_from([0, 1, -1, 4, 80, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.integers(-3, 100), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def leaf_paths(value, prefix=()) -> list[tuple]:
    """Every key path in a JSON document (objects and lists), leaves and inner nodes alike."""
    paths = [prefix] if prefix else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in children:
        paths += leaf_paths(child, (*prefix, key))
    return paths


@pytest.fixture(scope="module")
def manifest(tiny_bundle: Path) -> dict:
    return json.loads((tiny_bundle / "bundle.json").read_text())


def assert_refused_or_usable(bundle: Path) -> None:
    try:
        Bundle.load(bundle)
    except BundleError:
        return
    recognizer = Recognizer(bundle)
    try:
        recognizer.transcribe(np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32), 16000)
    except FramegateError:
        pass


@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_edit_of_bundle_json_is_a_bundle_error_or_harmless(tiny_bundle, manifest, tmp_path_factory, data):
    path = data.draw(st.sampled_from(leaf_paths(manifest)), label="path")
    edited = copy.deepcopy(manifest)
    parent = edited
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans(), label="delete"):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES, label="value")
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("edit") / "b"))
    (bundle / "bundle.json").write_text(json.dumps(edited))
    assert_refused_or_usable(bundle)


@PROPERTY_SETTINGS
@given(name=st.sampled_from(["encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"]),
       kind=st.sampled_from(["flip", "truncate", "insert"]), where=st.floats(0, 1), byte=st.integers(0, 255),
       count=st.integers(1, 16))
def test_damaged_file_bytes_with_refreshed_checksum_are_a_bundle_error_or_harmless(
        tiny_bundle, manifest, tmp_path_factory, name, kind, where, byte, count):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("bytes") / "b"))
    data = bytearray((bundle / name).read_bytes())
    at = min(int(where * len(data)), len(data) - 1)
    if kind == "flip":
        for i in range(at, min(at + count, len(data))):
            data[i] ^= byte or 0xFF
    elif kind == "truncate":
        del data[at:]
    else:
        data[at:at] = bytes([byte]) * count
    (bundle / name).write_bytes(bytes(data))
    edited = copy.deepcopy(manifest)
    edited["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "bundle.json").write_text(json.dumps(edited))
    assert_refused_or_usable(bundle)
