"""An int8 LSTM encoder whose streamed and whole-utterance passes compute the same numbers.

The LSTM transducer's per-window cost is streaming its weights from memory (22 MB in fp32
for the default model, against a few MACs per byte). ONNX Runtime's DynamicQuantizeLSTM
keeps W and R in int8, a quarter of the bytes, and quantizes the recurrent state step by
step; but it quantizes the input X with one range over the whole call, so a 40 ms window
and a whole utterance would round the same frame differently and streaming would no longer
equal offline. Here each LSTM's input is clipped to a fixed range [-M, M] and two constant
columns +M and -M (with zero weight columns) are appended, so every call's range is exactly
[-M, M] whatever its length: every call rounds a frame alike, and the streamed encoder output
equals the whole-utterance pass bit for bit.

M: an LSTM that reads another LSTM's output sees |h| < 1, so M = 1 clips nothing. Otherwise
(the front end's output) M is the largest magnitude seen on calibration audio times a margin.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from framegate.engine.audio import canonical_16k, read_audio
from framegate.engine.bundle import Bundle, file_record
from framegate.engine.encoder_runner import LstmEncoderRunner
from framegate.engine.errors import BundleError
from framegate.engine.offline import padded_features
from framegate.export.feature_cache import read_manifest

SCHEME = "int8"
CARD = "MODEL_CARD.md"
MARGIN = 1.5  # headroom over the calibration audio's largest LSTM input
PASS_THROUGH = ("Squeeze", "Unsqueeze", "Transpose", "Reshape", "Identity")


def quantize_bundle(bundle_dir: Path, out_dir: Path, calibration: Iterable[np.ndarray], source: str) -> Path:
    """Write `out_dir`: the bundle at `bundle_dir` with its LSTM weights in int8 (the other files
    copied). `calibration`: 16 kHz mono float32 utterances; `source` names them in bundle.json."""
    bundle = Bundle.load(bundle_dir)
    if bundle.model_type != "lstm_transducer":
        raise BundleError(f"{bundle_dir}: int8 quantization takes an lstm_transducer bundle (its encoder is one "
                          f"ONNX graph of LSTM ops); this one is {bundle.model_type}")
    if "quantization" in bundle.manifest:
        raise BundleError(f"{bundle_dir}: already quantized ({bundle.manifest['quantization']['scheme']})")
    if Path(out_dir).resolve() == Path(bundle_dir).resolve():
        raise BundleError(f"the quantized bundle must go to another directory than {bundle_dir}")
    model = onnx.load(str(Path(bundle_dir) / "encoder.onnx"))
    lstms = [node for node in model.graph.node if node.op_type == "LSTM"]
    if not lstms:
        raise BundleError(f"{bundle_dir}/encoder.onnx has no LSTM op to quantize")
    largest, utterances = _largest_inputs(bundle, model, lstms, calibration)
    ranges = [1.0 if _reads_lstm_output(model.graph, node) else MARGIN * peak for node, peak in zip(lstms, largest)]
    for index, (node, bound) in enumerate(zip(lstms, ranges)):
        _fix_input_range(model.graph, node, bound, f"fixed_range{index}")
    out_dir = Path(out_dir)
    # MODEL_CARD.md stays behind: its figures are the fp32 encoder's (`framegate model-card` writes the new one)
    shutil.copytree(bundle_dir, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(CARD))
    with tempfile.TemporaryDirectory(prefix="framegate_quantize_") as scratch:
        fixed = Path(scratch) / "encoder.onnx"
        onnx.save(model, str(fixed))
        _quantize_lstms(fixed, out_dir / "encoder.onnx")
    _record(out_dir, bundle.manifest, {"scheme": SCHEME, "lstm_input_range": ranges,
                                       "calibration": {"source": source, "utterances": utterances,
                                                       "largest_input": [float(x) for x in largest]}})
    Bundle.load(out_dir)  # what was written loads, checksums and sherpa-onnx metadata included
    return out_dir


def calibration_audio(manifest: Path, limit: int) -> tuple[Iterator[np.ndarray], str]:
    """The first `limit` utterances of a corpus manifest (audio paths relative to its folder) as
    16 kHz mono float32, read one at a time, and how bundle.json names them."""
    records = read_manifest(manifest)[:limit]
    if not all(isinstance(r, dict) and isinstance(r.get("audio"), str) for r in records):
        raise ValueError(f"{manifest}: every line must be a JSON object with an 'audio' path")

    def audio() -> Iterator[np.ndarray]:
        for record in records:
            samples, rate = read_audio(manifest.parent / record["audio"])
            yield canonical_16k(samples, rate)

    return audio(), f"{manifest} ({len(records)} utterances)"


def _largest_inputs(bundle: Bundle, model: onnx.ModelProto, lstms: list[onnx.NodeProto],
                    calibration: Iterable[np.ndarray]) -> tuple[list[float], int]:
    """Each LSTM's largest input magnitude over the calibration utterances (whole-utterance passes)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for node in lstms:
        probe.graph.output.append(helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    zero = LstmEncoderRunner(bundle).initial_state()
    largest, utterances = np.zeros(len(lstms)), 0
    for samples in calibration:
        features = padded_features(bundle, samples)
        if not len(features):
            continue
        outputs = session.run(None, {"x": features[np.newaxis], "h": zero.h, "c": zero.c})[-len(lstms):]
        largest = np.maximum(largest, [float(np.abs(x).max()) for x in outputs])
        utterances += 1
    if not utterances or not np.all(largest > 0):
        raise ValueError("calibration needs at least one utterance with audio in it")
    return [float(x) for x in largest], utterances


def _reads_lstm_output(graph: onnx.GraphProto, node: onnx.NodeProto) -> bool:
    """Whether `node`'s input is another LSTM's output Y (through reshaping only) of the default
    activations, whose magnitude o * tanh(c) stays below 1."""
    producers = {out: n for n in graph.node for out in n.output}
    name = node.input[0]
    source = producers.get(name)
    while source is not None and source.op_type in PASS_THROUGH:
        name = source.input[0]
        source = producers.get(name)
    if source is None or source.op_type != "LSTM" or name != source.output[0]:
        return False
    activations = next((a.strings for a in source.attribute if a.name == "activations"), None)
    return not activations or [a.decode() for a in activations] == ["Sigmoid", "Tanh", "Tanh"]


def _fix_input_range(graph: onnx.GraphProto, node: onnx.NodeProto, bound: float, prefix: str) -> None:
    """X -> concat(clip(X, -bound, bound), [+bound, -bound]) along features; W gets zero columns."""
    def name(suffix: str) -> str:
        return f"{prefix}_{suffix}"

    graph.initializer.extend([
        numpy_helper.from_array(np.array(-bound, np.float32), name("low")),
        numpy_helper.from_array(np.array(bound, np.float32), name("high")),
        numpy_helper.from_array(np.array([bound, -bound], np.float32), name("ends")),
        numpy_helper.from_array(np.array(0.0, np.float32), name("zero")),
        numpy_helper.from_array(np.array([0], np.int64), name("start")),
        numpy_helper.from_array(np.array([2], np.int64), name("stop")),
        numpy_helper.from_array(np.array([2], np.int64), name("axis")),
    ])
    x = node.input[0]
    added = [
        helper.make_node("Clip", [x, name("low"), name("high")], [name("clipped")]),
        helper.make_node("Slice", [name("clipped"), name("start"), name("stop"), name("axis")], [name("two")]),
        helper.make_node("Mul", [name("two"), name("zero")], [name("zeros")]),
        helper.make_node("Add", [name("zeros"), name("ends")], [name("columns")]),
        helper.make_node("Concat", [name("clipped"), name("columns")], [name("x")], axis=2),
    ]
    at = list(graph.node).index(node)
    for offset, new in enumerate(added):
        graph.node.insert(at + offset, new)
    node.input[0] = name("x")
    weights = next(t for t in graph.initializer if t.name == node.input[1])  # W: (directions, 4H, input)
    w = numpy_helper.to_array(weights)
    padded = np.concatenate([w, np.zeros((*w.shape[:2], 2), dtype=w.dtype)], axis=2)
    weights.CopyFrom(numpy_helper.from_array(padded, weights.name))


def _quantize_lstms(source: Path, target: Path) -> None:
    """LSTM -> DynamicQuantizeLSTM (int8 W and R); the other ops stay in fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to run shape inference first concerns static quantization
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
    finally:
        root.setLevel(level)


def _record(out_dir: Path, manifest: dict, quantization: dict) -> None:
    config = dict(manifest)
    config["files"] = {**config["files"], "encoder.onnx": file_record(out_dir / "encoder.onnx")}
    config["quantization"] = quantization
    (out_dir / "bundle.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
