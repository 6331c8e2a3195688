// Binds FeatureWindowConfig and FeatureWindow.
//
// Frames cross the boundary as C-contiguous float32 arrays of shape
// (n, num_bins); anything else is refused with a ValueError naming the
// expected shape and dtype (the binding never converts silently). Windows come
// back as new float32 arrays of shape (k, window_frames, num_bins) that own
// the C++ output buffer (no copy).
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

#include "arrays.h"
#include "feature_window.h"

namespace py = pybind11;

namespace framegate {
namespace {

// A FeatureWindow and the lock that serializes it: native calls drop the GIL,
// so Python threads sharing one object would otherwise race. The lock is only
// ever taken with the GIL released, so the two can never deadlock.
class LockedFeatureWindow {
  // Runs f(window_) with the GIL released and the lock held. Defined first:
  // the members below deduce their result types from it.
  template <typename F>
  auto Locked(F&& f) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return f(window_);
  }

 public:
  explicit LockedFeatureWindow(const FeatureWindowConfig& config) : window_(config) {}

  py::array_t<float> Accept(const py::object& frames_obj) {
    const py::array frames = bindings::CheckedFloat32(frames_obj, {-1, window_.config().num_bins}, "frames");
    const auto* data = static_cast<const float*>(frames.data());
    const auto num_frames = static_cast<std::size_t>(frames.shape(0));
    std::vector<float> out;
    const std::size_t k =
        Locked([&](FeatureWindow& w) { return w.Accept(data, num_frames, &out); });
    return ToArray(std::move(out), k);
  }

  py::array_t<float> Finish() {
    std::vector<float> out;
    const std::size_t k = Locked([&](FeatureWindow& w) { return w.Finish(&out); });
    return ToArray(std::move(out), k);
  }

  void Reset() {
    Locked([](FeatureWindow& w) { w.Reset(); });
  }

  std::uint64_t frames_received() {
    return Locked([](FeatureWindow& w) { return w.frames_received(); });
  }
  std::uint64_t windows_emitted() {
    return Locked([](FeatureWindow& w) { return w.windows_emitted(); });
  }
  bool finished() {
    return Locked([](FeatureWindow& w) { return w.finished(); });
  }
  // Immutable after construction: no lock needed. A copy, so Python cannot
  // edit the geometry of a live window.
  FeatureWindowConfig config() const { return window_.config(); }
  std::size_t capacity_frames() const { return window_.capacity_frames(); }

 private:
  // Hands `windows` to numpy without copying: the array owns the vector.
  py::array_t<float> ToArray(std::vector<float>&& windows, std::size_t k) const {
    const FeatureWindowConfig& c = window_.config();
    auto storage = std::make_unique<std::vector<float>>(std::move(windows));
    const float* data = storage->data();
    py::capsule owner(storage.get(), [](void* p) {
      std::unique_ptr<std::vector<float>>(static_cast<std::vector<float>*>(p));
    });
    storage.release();  // now owned by the capsule
    return py::array_t<float>({static_cast<py::ssize_t>(k),
                               static_cast<py::ssize_t>(c.window_frames),
                               static_cast<py::ssize_t>(c.num_bins)},
                              data, owner);
  }

  std::mutex mutex_;
  FeatureWindow window_;
};

}  // namespace

void BindFeatureWindow(py::module_& m) {
  py::class_<FeatureWindowConfig>(m, "FeatureWindowConfig",
                                  "Window geometry: window_frames per window, a new window every "
                                  "chunk_frames, num_bins floats per frame, pad_value for Finish.")
      .def(py::init([](int window_frames, int chunk_frames, int num_bins, float pad_value) {
             FeatureWindowConfig c;
             c.window_frames = window_frames;
             c.chunk_frames = chunk_frames;
             c.num_bins = num_bins;
             c.pad_value = pad_value;
             return c;
           }),
           py::arg("window_frames"), py::arg("chunk_frames"), py::arg("num_bins") = 80,
           py::arg("pad_value") = 0.0f)
      .def_readwrite("window_frames", &FeatureWindowConfig::window_frames)
      .def_readwrite("chunk_frames", &FeatureWindowConfig::chunk_frames)
      .def_readwrite("num_bins", &FeatureWindowConfig::num_bins)
      .def_readwrite("pad_value", &FeatureWindowConfig::pad_value)
      .def("validate", &FeatureWindowConfig::Validate,
           "Raise ValueError naming the first invalid field.")
      .def("__repr__", &FeatureWindowConfig::ToString);

  py::class_<LockedFeatureWindow>(
      m, "FeatureWindow", "Bounded ring that assembles encoder windows from streaming frames.")
      .def(py::init<const FeatureWindowConfig&>(), py::arg("config"))
      .def("accept", &LockedFeatureWindow::Accept, py::arg("frames"),
           "Take float32 frames (n, num_bins); return the windows completed, "
           "shape (k, window_frames, num_bins).")
      .def("finish", &LockedFeatureWindow::Finish,
           "End the stream: pad with pad_value and return the remaining windows.")
      .def("reset", &LockedFeatureWindow::Reset, "Start a new utterance.")
      .def_property_readonly("config", &LockedFeatureWindow::config)
      .def_property_readonly("capacity_frames", &LockedFeatureWindow::capacity_frames)
      .def_property_readonly("frames_received", &LockedFeatureWindow::frames_received)
      .def_property_readonly("windows_emitted", &LockedFeatureWindow::windows_emitted)
      .def_property_readonly("finished", &LockedFeatureWindow::finished);
}

}  // namespace framegate
