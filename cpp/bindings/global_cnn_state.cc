// Binds GlobalCnnConfig, GlobalCnn and GlobalCnnState.
//
// Arrays cross the boundary only as C-contiguous float32 arrays of the exact
// expected shape; anything else is refused with a ValueError naming the
// expected and the received array (no silent conversion). Non-finite frames
// or weights are refused by the C++ core, before the state changes.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "arrays.h"
#include "global_cnn_layout.h"
#include "global_cnn_state.h"
#include "locked_state.h"

namespace py = pybind11;

namespace framegate {
namespace {

// A global-CNN weight Source (global_cnn_layout.h) over one block's dict of
// arrays keyed by tensor key; errors name the block and the key.
class BlockTensors {
 public:
  BlockTensors(py::dict block, int index) : block_(std::move(block)), index_(index) {}

  std::vector<float> Take(const std::string& key, const std::vector<std::int64_t>& dims) const {
    const std::string what = "block " + std::to_string(index_) + " " + key;
    if (!block_.contains(key)) throw std::invalid_argument(what + " is missing");
    return bindings::CopyFloat32(block_[py::str(key)], dims, what);
  }

 private:
  py::dict block_;
  int index_;
};

using LockedState = bindings::LockedState<GlobalCnnState>;

class PyGlobalCnn {
 public:
  PyGlobalCnn(const GlobalCnnConfig& config, const py::list& blocks)
      : cnn_(config, ToWeights(config, blocks)) {}

  std::unique_ptr<LockedState> InitialState() const {
    return std::make_unique<LockedState>(cnn_.InitialState());
  }

  py::array_t<float> Forward(const py::object& frames_obj, LockedState& state) const {
    const py::array frames = bindings::CheckedFloat32(frames_obj, {-1, cnn_.config().channels}, "frames");
    const auto n = static_cast<std::size_t>(frames.shape(0));
    py::array_t<float> out({frames.shape(0), frames.shape(1)});
    const auto* in = static_cast<const float*>(frames.data());
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(state.mutex());
      cnn_.Forward(in, n, &state.state(), dst);
    }
    return out;
  }

  void Reset(LockedState& state) const {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(state.mutex());
    cnn_.Reset(&state.state());
  }

  GlobalCnnConfig config() const { return cnn_.config(); }

 private:
  static std::vector<GlobalCnnBlockWeights> ToWeights(const GlobalCnnConfig& config,
                                                      const py::list& blocks) {
    config.Validate();
    std::vector<GlobalCnnBlockWeights> out;
    int index = 0;
    for (const py::handle& item : blocks) {
      if (!py::isinstance<py::dict>(item)) {
        throw std::invalid_argument("block " + std::to_string(index) +
                                    " weights must be a dict of arrays");
      }
      const BlockTensors block(py::reinterpret_borrow<py::dict>(item), index);
      out.push_back(TakeGlobalCnnBlockWeights(config, block));
      ++index;
    }
    return out;
  }

  GlobalCnn cnn_;
};

}  // namespace

void BindGlobalCnnState(py::module_& m) {
  py::enum_<SqueezeMode>(m, "SqueezeMode")
      .value("cumulative", SqueezeMode::kCumulative)
      .value("ema", SqueezeMode::kEma);

  py::class_<GlobalCnnConfig>(m, "GlobalCnnConfig", "Sizes and squeeze mode of a global CNN.")
      .def(py::init([](int channels, int hidden, int se_hidden, int num_blocks, SqueezeMode squeeze,
                       double ema_decay) {
             GlobalCnnConfig c;
             c.channels = channels;
             c.hidden = hidden;
             c.se_hidden = se_hidden;
             c.num_blocks = num_blocks;
             c.squeeze = squeeze;
             c.ema_decay = ema_decay;
             return c;
           }),
           py::arg("channels"), py::arg("hidden"), py::arg("se_hidden"), py::arg("num_blocks"),
           py::arg("squeeze") = SqueezeMode::kCumulative, py::arg("ema_decay") = 0.99)
      .def_readonly("channels", &GlobalCnnConfig::channels)
      .def_readonly("hidden", &GlobalCnnConfig::hidden)
      .def_readonly("se_hidden", &GlobalCnnConfig::se_hidden)
      .def_readonly("num_blocks", &GlobalCnnConfig::num_blocks)
      .def_readonly("squeeze", &GlobalCnnConfig::squeeze)
      .def_readonly("ema_decay", &GlobalCnnConfig::ema_decay)
      .def("validate", &GlobalCnnConfig::Validate, "Raise ValueError naming the first invalid field.")
      .def("__repr__", &GlobalCnnConfig::ToString);

  py::class_<LockedState>(m, "GlobalCnnState", "One stream's global-CNN state (fixed size).")
      .def_property_readonly("frames", &LockedState::frames);

  py::class_<PyGlobalCnn>(m, "GlobalCnn", "The global CNN's weights; streams keep their own state.")
      .def(py::init<const GlobalCnnConfig&, const py::list&>(), py::arg("config"), py::arg("blocks"),
           "blocks: one dict per block of float32 arrays norm_weight (channels), norm_bias, "
           "pw1_weight (hidden, channels), pw1_bias, "
           "dw_weight (hidden, 3), dw_bias, pw2_weight (channels, hidden), pw2_bias, "
           "se1_weight (se_hidden, channels), se1_bias, se2_weight (channels, se_hidden), se2_bias.")
      .def("initial_state", &PyGlobalCnn::InitialState)
      .def("forward", &PyGlobalCnn::Forward, py::arg("frames"), py::arg("state"),
           "Run float32 frames (n, channels) continuing `state` (updated in place); return (n, channels).")
      .def("reset", &PyGlobalCnn::Reset, py::arg("state"), "Return `state` to the utterance start.")
      .def_property_readonly("config", &PyGlobalCnn::config);
}

}  // namespace framegate
