"""Does a driver run agree with the x86 engine's references? Gate decisions first, then values.

The rules (issue 4 and 5): gate decisions must agree except where the reference arbitrator
probability is within `band` (1e-4) of the threshold, where float rounding may flip them; with
decisions forced equal (the driver's "forced" run replays the reference decisions), outputs must
agree within `tolerance` (1e-4), measured as max |a - b| / max(1, max |reference|): absolute for
outputs of unit scale, relative for larger ones. Dense outputs and the global CNN's outputs are
held to the same tolerance.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

BAND = 1e-4
TOLERANCE = 1e-4


def value_agreement(actual: np.ndarray, reference: np.ndarray, tolerance: float = TOLERANCE) -> dict:
    """max_abs_diff, the reference's scale, their ratio and whether it is within `tolerance`."""
    if actual.shape != reference.shape:
        return {"shape": list(actual.shape), "reference_shape": list(reference.shape), "within_tolerance": False}
    diff = float(np.max(np.abs(actual.astype(np.float64) - reference), initial=0.0))
    scale = float(np.max(np.abs(reference), initial=0.0))
    relative = diff / max(1.0, scale)
    return {"max_abs_diff": diff, "reference_max_abs": scale, "scaled_diff": relative,
            "within_tolerance": bool(relative <= tolerance)}


def agreement(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], band: float = BAND,
              tolerance: float = TOLERANCE) -> dict:
    """Compare a driver's outputs (read from its out file) with the references in `inputs`.

    Kernels or runs missing from `outputs` are left out; `passed` holds when every compared
    figure is within its rule.
    """
    report: dict = {"band": band, "tolerance": tolerance}
    checks: list[bool] = []
    if "gated.out" in outputs:
        ref_gates, ref_probs = inputs["gated.reference.gates"], inputs["gated.reference.probs"]
        threshold = float(inputs["gated.threshold"])
        gates = outputs["gated.gates"]
        differ = gates != ref_gates
        near = np.abs(ref_probs.astype(np.float64) - threshold) <= band
        decisions = {"gates": int(gates.size), "disagree": int(differ.sum()),
                     "disagree_outside_band": int((differ & ~near).sum()), "within_band": int(near.sum()),
                     "fraction_on": float(gates.mean()), "reference_fraction_on": float(ref_gates.mean())}
        decisions["agree"] = decisions["disagree_outside_band"] == 0
        report["gate_decisions"] = decisions
        checks.append(decisions["agree"])
        if not differ.any():
            report["gated_values"] = value_agreement(outputs["gated.out"], inputs["gated.reference.out"], tolerance)
            checks.append(report["gated_values"]["within_tolerance"])
    if "forced.out" in outputs:
        report["forced_values"] = value_agreement(outputs["forced.out"], inputs["gated.reference.out"], tolerance)
        report["forced_probs"] = value_agreement(outputs["forced.probs"], inputs["gated.reference.probs"], tolerance)
        checks += [report["forced_values"]["within_tolerance"], report["forced_probs"]["within_tolerance"]]
    if "dense.out" in outputs:
        report["dense_values"] = value_agreement(outputs["dense.out"], inputs["gated.reference.dense_out"], tolerance)
        checks.append(report["dense_values"]["within_tolerance"])
    if "global_cnn.out" in outputs:
        report["global_cnn_values"] = value_agreement(outputs["global_cnn.out"], inputs["global_cnn.reference.out"],
                                                      tolerance)
        checks.append(report["global_cnn_values"]["within_tolerance"])
    report["compared"] = len(checks)
    report["passed"] = bool(checks) and all(checks)
    return report
