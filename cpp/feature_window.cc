#include "feature_window.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace framegate {

void FeatureWindowConfig::Validate() const {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("FeatureWindowConfig." + what);
  };
  if (chunk_frames < 1) {
    fail("chunk_frames must be >= 1, got " + std::to_string(chunk_frames));
  }
  if (window_frames < chunk_frames) {
    fail("window_frames must be >= chunk_frames (" +
         std::to_string(chunk_frames) + "), got " +
         std::to_string(window_frames));
  }
  if (num_bins < 1) {
    fail("num_bins must be >= 1, got " + std::to_string(num_bins));
  }
  if (static_cast<long long>(window_frames) * num_bins >
      std::numeric_limits<int>::max()) {
    fail("window_frames * num_bins must fit in int, got " +
         std::to_string(window_frames) + " * " + std::to_string(num_bins));
  }
  if (!std::isfinite(pad_value)) {
    fail("pad_value must be finite");
  }
}

std::string FeatureWindowConfig::ToString() const {
  std::ostringstream os;
  os << "FeatureWindowConfig(window_frames=" << window_frames
     << ", chunk_frames=" << chunk_frames << ", num_bins=" << num_bins
     << ", pad_value=" << pad_value << ")";
  return os.str();
}

namespace {

// Validates before any member is sized from the config.
const FeatureWindowConfig& Validated(const FeatureWindowConfig& config) {
  config.Validate();
  return config;
}

}  // namespace

FeatureWindow::FeatureWindow(const FeatureWindowConfig& config)
    : config_(Validated(config)),
      window_frames_(static_cast<std::size_t>(config.window_frames)),
      chunk_frames_(static_cast<std::size_t>(config.chunk_frames)),
      num_bins_(static_cast<std::size_t>(config.num_bins)),
      capacity_frames_(window_frames_),
      ring_(capacity_frames_ * num_bins_, config.pad_value),
      pad_row_(num_bins_, config.pad_value) {}

std::size_t FeatureWindow::WindowsReadyAfter(std::size_t num_frames) const {
  if (finished_) return 0;
  const std::size_t available = buffered_ + num_frames;
  if (available < window_frames_) return 0;
  return (available - window_frames_) / chunk_frames_ + 1;
}

std::size_t FeatureWindow::Accept(const float* frames, std::size_t num_frames,
                                  std::vector<float>* out_windows) {
  if (out_windows == nullptr) {
    throw std::invalid_argument("FeatureWindow::Accept: out_windows is null");
  }
  if (frames == nullptr && num_frames > 0) {
    throw std::invalid_argument("FeatureWindow::Accept: frames is null");
  }
  if (finished_) {
    throw std::logic_error(
        "FeatureWindow::Accept after Finish; call Reset to start a new "
        "utterance");
  }
  out_windows->reserve(out_windows->size() +
                       WindowsReadyAfter(num_frames) * floats_per_window());
  frames_received_ += num_frames;
  return Push(frames, num_frames, out_windows);
}

std::size_t FeatureWindow::Finish(std::vector<float>* out_windows) {
  if (out_windows == nullptr) {
    throw std::invalid_argument("FeatureWindow::Finish: out_windows is null");
  }
  if (finished_) return 0;
  // The next window starts at frame windows_emitted_ * chunk_frames_ and has
  // buffered_ < window_frames_ of its frames. The frames in it that lie within
  // the previous window (the first window_frames - chunk_frames) are already
  // covered; if any frame lies beyond, or no window was emitted yet, one padded
  // window completes the stream, and it is the last one the formula allows.
  const bool needs_window =
      buffered_ > window_frames_ - chunk_frames_ ||
      (windows_emitted_ == 0 && buffered_ > 0);
  std::size_t emitted = 0;
  if (needs_window) {
    out_windows->reserve(out_windows->size() + floats_per_window());
    const std::size_t pad_frames = window_frames_ - buffered_;
    for (std::size_t i = 0; i < pad_frames; ++i) {
      emitted += Push(pad_row_.data(), 1, out_windows);
    }
  }
  finished_ = true;
  return emitted;
}

void FeatureWindow::Reset() {
  head_ = 0;
  buffered_ = 0;
  frames_received_ = 0;
  windows_emitted_ = 0;
  finished_ = false;
}

std::size_t FeatureWindow::Push(const float* frames, std::size_t num_frames,
                                std::vector<float>* out_windows) {
  std::size_t emitted = 0;
  while (num_frames > 0) {
    const std::size_t take = std::min(num_frames, window_frames_ - buffered_);
    const std::size_t write_row = (head_ + buffered_) % capacity_frames_;
    const std::size_t before_wrap = std::min(take, capacity_frames_ - write_row);
    float* ring = ring_.data();
    std::copy(frames, frames + before_wrap * num_bins_,
              ring + write_row * num_bins_);
    std::copy(frames + before_wrap * num_bins_, frames + take * num_bins_,
              ring);
    buffered_ += take;
    frames += take * num_bins_;
    num_frames -= take;
    if (buffered_ == window_frames_) {
      EmitWindow(out_windows);
      ++emitted;
    }
  }
  return emitted;
}

void FeatureWindow::EmitWindow(std::vector<float>* out_windows) {
  const float* ring = ring_.data();
  const std::size_t before_wrap =
      std::min(window_frames_, capacity_frames_ - head_);
  out_windows->insert(out_windows->end(), ring + head_ * num_bins_,
                      ring + (head_ + before_wrap) * num_bins_);
  out_windows->insert(out_windows->end(), ring,
                      ring + (window_frames_ - before_wrap) * num_bins_);
  head_ = (head_ + chunk_frames_) % capacity_frames_;
  buffered_ -= chunk_frames_;
  ++windows_emitted_;
}

}  // namespace framegate
