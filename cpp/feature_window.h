// FeatureWindow: assembles encoder input windows from streaming fbank frames.
//
// A stream of frames (each `num_bins` floats) arrives in blocks of any size.
// Window k is the `window_frames` consecutive frames starting at frame
// k * chunk_frames; it is emitted as soon as its last frame has arrived, so
// consecutive windows overlap by window_frames - chunk_frames frames (the
// encoder's lookahead / left context). Finish() pads the stream with
// `pad_value` frames so every received frame reaches the encoder.
//
// Memory is a ring of window_frames frames, fixed at construction: it never
// grows with the stream length or with the size of one Accept() block.
// Not thread-safe: one stream, one caller at a time.
#ifndef FRAMEGATE_CPP_FEATURE_WINDOW_H_
#define FRAMEGATE_CPP_FEATURE_WINDOW_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace framegate {

struct FeatureWindowConfig {
  int window_frames = 0;  // frames per emitted window (chunk + lookahead)
  int chunk_frames = 0;   // stride between consecutive window starts
  int num_bins = 80;      // floats per frame
  float pad_value = 0.0f; // value of the frames Finish() appends

  // Throws std::invalid_argument naming the offending field.
  void Validate() const;
  std::string ToString() const;
};

class FeatureWindow {
 public:
  // Validates `config` (std::invalid_argument on a bad field).
  explicit FeatureWindow(const FeatureWindowConfig& config);

  // Consumes `num_frames` row-major frames (num_frames x num_bins floats;
  // `frames` may be null when num_frames == 0). Appends every window that
  // becomes complete to `out_windows` (row-major k x window_frames x num_bins)
  // and returns k. Throws std::logic_error after Finish() until Reset().
  std::size_t Accept(const float* frames, std::size_t num_frames,
                     std::vector<float>* out_windows);

  // Ends the stream: pads it with pad_value frames to the smallest length
  // L = k * chunk_frames + (window_frames - chunk_frames) >= frames_received()
  // with k >= 1 (no padding and no window when no frame was received), then
  // appends the remaining windows and returns their count. A second call
  // returns 0.
  std::size_t Finish(std::vector<float>* out_windows);

  // Forgets the current utterance; the next Accept() starts a new one.
  void Reset();

  // Windows that Accept() would emit if given `num_frames` more frames now.
  std::size_t WindowsReadyAfter(std::size_t num_frames) const;

  const FeatureWindowConfig& config() const { return config_; }
  std::size_t capacity_frames() const { return capacity_frames_; }
  std::size_t floats_per_window() const {
    return window_frames_ * num_bins_;
  }
  std::uint64_t frames_received() const { return frames_received_; }
  std::uint64_t windows_emitted() const { return windows_emitted_; }
  bool finished() const { return finished_; }

 private:
  // Copies `num_frames` frames into the ring, emitting windows as they fill.
  std::size_t Push(const float* frames, std::size_t num_frames,
                   std::vector<float>* out_windows);
  // Appends the window starting at ring row head_ and advances by one chunk.
  void EmitWindow(std::vector<float>* out_windows);

  FeatureWindowConfig config_;
  std::size_t window_frames_;
  std::size_t chunk_frames_;
  std::size_t num_bins_;
  std::size_t capacity_frames_;
  std::vector<float> ring_;     // capacity_frames_ x num_bins_
  std::vector<float> pad_row_;  // one frame of pad_value
  std::size_t head_ = 0;        // ring row of the next window's first frame
  std::size_t buffered_ = 0;    // frames held from head_ on, < window_frames_
  std::uint64_t frames_received_ = 0;
  std::uint64_t windows_emitted_ = 0;
  bool finished_ = false;
};

}  // namespace framegate

#endif  // FRAMEGATE_CPP_FEATURE_WINDOW_H_
