"""Record what the C++ driver replays: kernel weights from bundles, frames from real audio, x86 references.

Writes two raw tensor files (kernels/raw_tensors.py; cpp/tools/framegate_driver.cc reads them):
  model.fgt   each kernel's config and weights, read from the bundle's ONNX initializers by the
              names bundle.json lists (the engine reads the same arrays the same way)
  inputs.fgt  per kernel the front-end frames the engine hands the C++ kernel for each utterance
              (the bundle's ONNX front end over the whole padded utterance, as the offline
              reference runs it), the engine's frames per call, and the x86 engine's results on
              them through the Python binding, called chunk by chunk as the engine calls it:
              gated outputs, probabilities and decisions at the threshold, dense outputs, MACs;
              the global CNN's outputs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framegate.engine.bundle import Bundle
from framegate.engine.encoder_runner import ConvRnntEncoderRunner, GatedTransformerRunner
from framegate.engine.errors import BundleError
from framegate.engine.offline import padded_features
from framegate.kernels.gated_encoder import GatedEncoder
from framegate.kernels.raw_tensors import model_tensors, write_raw_tensors

TARGET_FRACTION_ON = 0.5


@dataclass(frozen=True)
class Recording:
    """Where the files went and what they hold."""

    model: Path
    inputs: Path
    threshold: float | None       # the gated runs' threshold (None without a gated bundle)
    threshold_rule: str           # "given", or how it was calibrated
    fraction_on: float | None     # fraction of gates on in the x86 reference at that threshold
    frames: dict[str, int]        # kernel -> recorded frames
    chunk_frames: dict[str, int]  # kernel -> frames per kernel call


def bundle_tensors(bundle: Bundle, section: str) -> dict[str, np.ndarray]:
    """The weights a C++ kernel reads: the initializers of the section's weights graph, by the
    names bundle.json lists (each initializer is also a graph output, read through ONNX Runtime)."""
    spec = bundle.manifest[section]
    session = bundle.sessions[spec["file"]]
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, {})))
    try:
        return {r["name"]: np.ascontiguousarray(values[r["name"]], dtype=np.float32) for r in spec["tensors"]}
    except KeyError as e:
        raise BundleError(f"{bundle.path}: bundle.json {section} lists {e}, which {spec['file']} lacks") from None


def encoder_frames_per_call(bundle: Bundle) -> int:
    """Frames the engine hands the C++ kernel per streaming window (chunk after subsampling)."""
    return bundle.encoder.chunk_frames // bundle.encoder.subsampling


def run_gated(encoder: GatedEncoder, utterances: Sequence[np.ndarray], chunk: int, mode: str,
              threshold: float) -> dict[str, np.ndarray]:
    """out, probs, gates of every frame (utterances back to back, fresh state each) and the MACs."""
    outs, probs, gates, macs = [], [], [], 0
    for frames in utterances:
        state = encoder.initial_state()
        for start in range(0, len(frames), chunk):
            result = encoder.forward(frames[start:start + chunk], state, threshold=threshold, mode=mode)
            outs.append(result.out)
            probs.append(result.probs)
            gates.append(result.gates)
            macs += result.macs
    return {"out": np.concatenate(outs), "probs": np.concatenate(probs), "gates": np.concatenate(gates),
            "macs": np.int64(macs)}


def calibrate_threshold(encoder: GatedEncoder, utterances: Sequence[np.ndarray], chunk: int,
                        target: float = TARGET_FRACTION_ON) -> float:
    """A threshold at which about `target` of all gates are on: the median arbitrator probability
    (exact for a feature arbitrator, whose probabilities do not depend on decisions), refined by
    bisection when decisions feed back (block arbitrators)."""
    low, high = 0.0, 1.0
    threshold = float(np.median(run_gated(encoder, utterances, chunk, "gated", 0.5)["probs"]))
    for _ in range(30):
        on = float(run_gated(encoder, utterances, chunk, "gated", threshold)["gates"].mean())
        if abs(on - target) <= 0.05:
            return threshold
        low, high = (threshold, high) if on > target else (low, threshold)
        threshold = (low + high) / 2
    raise ValueError(f"no threshold puts {target:.0%} of the gates on (last: {threshold}, {on:.1%} on)")


def record(out_dir: Path, utterances_16k: Sequence[np.ndarray], gated_bundle: Path | None = None,
           convrnnt_bundle: Path | None = None, threshold: float | None = None) -> Recording:
    """Write model.fgt and inputs.fgt into `out_dir` for the given bundles (at least one) and audio."""
    if gated_bundle is None and convrnnt_bundle is None:
        raise ValueError("record needs a gated or a ConvRNN-T bundle")
    if not utterances_16k:
        raise ValueError("record needs at least one utterance")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gated = global_cnn = None
    inputs: dict[str, np.ndarray] = {}
    frames: dict[str, int] = {}
    chunks: dict[str, int] = {}
    rule, fraction_on = "given", None

    if gated_bundle is not None:
        bundle = _load(gated_bundle, "gated_transformer")
        runner = GatedTransformerRunner(bundle)
        utts = [runner.frontend(padded_features(bundle, s)) for s in utterances_16k]
        chunk = encoder_frames_per_call(bundle)
        if threshold is None:
            threshold = calibrate_threshold(runner.encoder, utts, chunk)
            rule = f"calibrated: about {TARGET_FRACTION_ON:.0%} of gates on over the recorded frames"
        ref = run_gated(runner.encoder, utts, chunk, "gated", threshold)
        dense = run_gated(runner.encoder, utts, chunk, "dense", threshold)
        fraction_on = float(ref["gates"].mean())
        gated = (runner.config, bundle_tensors(bundle, "gating"))
        inputs.update({"gated.frames": np.concatenate(utts), "gated.utterance_frames": _lengths(utts),
                       "gated.chunk_frames": np.int64(chunk), "gated.threshold": np.float32(threshold),
                       "gated.reference.out": ref["out"], "gated.reference.probs": ref["probs"],
                       "gated.reference.gates": ref["gates"], "gated.reference.macs": ref["macs"],
                       "gated.reference.dense_out": dense["out"], "gated.reference.dense_macs": dense["macs"]})
        frames["gated"], chunks["gated"] = int(sum(map(len, utts))), chunk

    if convrnnt_bundle is not None:
        bundle = _load(convrnnt_bundle, "convrnnt")
        runner = ConvRnntEncoderRunner(bundle)
        frontend = bundle.sessions["frontend.onnx"]
        cache = runner.initial_state().local_cache
        utts = [frontend.run(None, {"x": padded_features(bundle, s)[np.newaxis], "local_cache": cache})[1][0]
                for s in utterances_16k]
        chunk = encoder_frames_per_call(bundle)
        outs = []
        for frames_u in utts:
            state = runner.global_cnn.initial_state()
            outs += [runner.global_cnn.forward(frames_u[i:i + chunk], state) for i in range(0, len(frames_u), chunk)]
        global_cnn = (runner.global_cnn.config, bundle_tensors(bundle, "global_cnn"))
        inputs.update({"global_cnn.frames": np.concatenate(utts), "global_cnn.utterance_frames": _lengths(utts),
                       "global_cnn.chunk_frames": np.int64(chunk), "global_cnn.reference.out": np.concatenate(outs)})
        frames["global_cnn"], chunks["global_cnn"] = int(sum(map(len, utts))), chunk

    model = write_raw_tensors(out_dir / "model.fgt", model_tensors(gated=gated, global_cnn=global_cnn))
    inputs_path = write_raw_tensors(out_dir / "inputs.fgt", inputs)
    return Recording(model=model, inputs=inputs_path, threshold=threshold if gated_bundle else None,
                     threshold_rule=rule if gated_bundle else "", fraction_on=fraction_on, frames=frames,
                     chunk_frames=chunks)


def _load(path: Path, model_type: str) -> Bundle:
    bundle = Bundle.load(path)
    if bundle.model_type != model_type:
        raise BundleError(f"{path}: a {bundle.model_type} bundle, expected {model_type}")
    return bundle


def _lengths(utterances: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([len(u) for u in utterances], dtype=np.int64)
