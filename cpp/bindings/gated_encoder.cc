// Binds GatedEncoderConfig, GatedEncoder and its per-stream state.
//
// Weights arrive as one dict of C-contiguous float32 arrays keyed by the
// names kernels/gated_encoder.py documents (block{l}.qkv_weight, ...); a
// missing, unexpected or misshapen tensor is a ValueError naming it. Frames
// and forced gates are checked for dtype, shape and contiguity here; values
// (finiteness, threshold range) by the C++ core before any state changes.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "arrays.h"
#include "gated_encoder.h"
#include "gated_encoder_layout.h"
#include "gemm.h"
#include "locked_state.h"

namespace py = pybind11;

namespace framegate {
namespace {

// A gated-encoder weight Source (gated_encoder_layout.h) over a dict of
// arrays keyed by tensor name.
class TensorReader {
 public:
  explicit TensorReader(const py::dict& tensors) : tensors_(tensors) {}

  std::vector<float> Take(const std::string& name,
                          const std::vector<std::int64_t>& dims) {
    if (!tensors_.contains(name)) {
      throw std::invalid_argument("gated encoder weights: '" + name +
                                  "' is missing");
    }
    used_.insert(name);
    return bindings::CopyFloat32(tensors_[py::str(name)], dims, "tensor '" + name + "'");
  }

  void CheckAllUsed() const {
    for (const auto& item : tensors_) {
      const std::string name = py::str(item.first);
      if (!used_.count(name)) {
        throw std::invalid_argument("gated encoder weights: unexpected tensor '" +
                                    name + "' for this config");
      }
    }
  }

 private:
  const py::dict& tensors_;
  std::set<std::string> used_;
};

GatedEncoderWeights ReadWeights(const GatedEncoderConfig& c,
                                const py::dict& tensors) {
  TensorReader reader(tensors);
  return TakeGatedEncoderWeights(c, reader);
}

using LockedState = bindings::LockedState<GatedEncoderState>;

class PyGatedEncoder {
 public:
  PyGatedEncoder(const GatedEncoderConfig& config, const py::dict& tensors)
      : encoder_(config, ReadWeights(config, tensors)) {}

  std::unique_ptr<LockedState> InitialState() const {
    return std::make_unique<LockedState>(encoder_.InitialState());
  }

  py::tuple Forward(const py::object& frames_obj, LockedState& state,
                    GateMode mode, float threshold,
                    const py::object& gates_obj) const {
    const GatedEncoderConfig& c = encoder_.config();
    const py::array frames = bindings::CheckedFloat32(frames_obj, {-1, c.d_model}, "frames");
    const py::ssize_t n = frames.shape(0);
    const py::ssize_t g = c.NumGates();
    py::array_t<std::uint8_t> gates({n, g});
    if (mode == GateMode::kForced) {
      if (gates_obj.is_none()) {
        throw std::invalid_argument("forced mode needs gates (n, " + std::to_string(g) + ") uint8");
      }
      const py::array given = bindings::Checked<std::uint8_t>(gates_obj, {n, g}, "gates", "uint8");
      std::copy_n(static_cast<const std::uint8_t*>(given.data()), given.size(), gates.mutable_data());
    } else if (!gates_obj.is_none()) {
      throw std::invalid_argument("gates are only read in forced mode");
    }
    py::array_t<float> out({n, static_cast<py::ssize_t>(c.joiner_dim)});
    py::array_t<float> probs({n, g});
    EncoderCounters counters;
    const auto* in = static_cast<const float*>(frames.data());
    float* out_data = out.mutable_data();
    float* probs_data = probs.mutable_data();
    std::uint8_t* gates_data = gates.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(state.mutex());
      encoder_.Forward(in, static_cast<int>(n), &state.state(), mode, threshold,
                       out_data, probs_data, gates_data, &counters);
    }
    py::dict telemetry;
    telemetry["attention_rows"] = counters.attention_rows;
    telemetry["ff_rows"] = counters.ff_rows;
    telemetry["frames"] = counters.frames;
    telemetry["arbitrator_macs"] = counters.arbitrator_macs;
    telemetry["block_macs"] = counters.block_macs;
    telemetry["output_macs"] = counters.output_macs;
    return py::make_tuple(out, probs, gates, telemetry);
  }

  void Reset(LockedState& state) const {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(state.mutex());
    encoder_.Reset(&state.state());
  }

  GatedEncoderConfig config() const { return encoder_.config(); }

 private:
  GatedEncoder encoder_;
};

}  // namespace

void BindGatedEncoder(py::module_& m) {
  m.def("set_gemm_threads", [](int threads) {
    if (threads < 1) throw std::invalid_argument("gemm threads must be >= 1, got " + std::to_string(threads));
    SetGemmThreads(threads);
  }, py::arg("threads"), "Threads the BLAS may use per GEMM, process-wide (scipy-openblas32 builds).");
  m.def("gemm_threads", &GemmThreads, "The BLAS's GEMM threads (0: not controlled by this build).");
  py::enum_<ArbitratorKind>(m, "ArbitratorKind")
      .value("none", ArbitratorKind::kNone)
      .value("feature", ArbitratorKind::kFeature)
      .value("block", ArbitratorKind::kBlock);
  py::enum_<GateMode>(m, "GateMode")
      .value("gated", GateMode::kGated)
      .value("dense", GateMode::kDense)
      .value("forced", GateMode::kForced);

  py::class_<GatedEncoderConfig>(m, "GatedEncoderConfig", "Sizes and arbitrator of a gated encoder.")
      .def(py::init([](int d_model, int num_heads, int ff_dim, int num_layers, int left_context,
                       int joiner_dim, int max_rows, ArbitratorKind arbitrator, int arbitrator_kernel,
                       int arbitrator_hidden) {
             GatedEncoderConfig c;
             c.d_model = d_model;
             c.num_heads = num_heads;
             c.ff_dim = ff_dim;
             c.num_layers = num_layers;
             c.left_context = left_context;
             c.joiner_dim = joiner_dim;
             c.max_rows = max_rows;
             c.arbitrator = arbitrator;
             c.arbitrator_kernel = arbitrator_kernel;
             c.arbitrator_hidden = arbitrator_hidden;
             return c;
           }),
           py::arg("d_model"), py::arg("num_heads"), py::arg("ff_dim"), py::arg("num_layers"),
           py::arg("left_context"), py::arg("joiner_dim"), py::arg("max_rows"), py::arg("arbitrator"),
           py::arg("arbitrator_kernel"), py::arg("arbitrator_hidden"))
      .def("validate", &GatedEncoderConfig::Validate, "Raise ValueError naming the first invalid field.")
      .def("__repr__", &GatedEncoderConfig::ToString);

  py::class_<LockedState>(m, "GatedEncoderState", "One stream's gated-encoder state (fixed size).")
      .def_property_readonly("frames", &LockedState::frames);

  py::class_<PyGatedEncoder>(m, "GatedEncoder", "A gated encoder's weights; streams keep their own state.")
      .def(py::init<const GatedEncoderConfig&, const py::dict&>(), py::arg("config"), py::arg("tensors"))
      .def("initial_state", &PyGatedEncoder::InitialState)
      .def("forward", &PyGatedEncoder::Forward, py::arg("frames"), py::arg("state"), py::arg("mode"),
           py::arg("threshold"), py::arg("gates") = py::none(),
           "float32 frames (n, d_model) continuing `state` -> (out (n, joiner_dim), probs (n, 2L), "
           "gates (n, 2L) uint8, telemetry dict).")
      .def("reset", &PyGatedEncoder::Reset, py::arg("state"))
      .def_property_readonly("config", &PyGatedEncoder::config);
}

}  // namespace framegate
