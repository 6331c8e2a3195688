// framegate_driver: the C++ kernels on recorded inputs, without Python.
//
// Runs the gated encoder (gated at a threshold, dense = every part on, and
// forced = the recorded reference decisions; one code path, GatedEncoder) and
// the global-CNN state kernel over recorded front-end frames, chunk by chunk
// as the engine calls them, one fresh stream state per utterance. Writes the
// outputs, probabilities, gate decisions, work counters and wall-clock times
// to a raw tensor file (raw_tensors.h) and prints one JSON line per run.
//
//   framegate_driver --weights model.fgt --inputs inputs.fgt [--out out.fgt]
//                    [--runs gated,dense,forced,global_cnn] [--repeat N]
//                    [--threshold X]
//
// model.fgt: the kernels' configs and weights (kernel_weights.h).
// inputs.fgt, per kernel K in {gated, global_cnn}:
//   K.frames            float32 (frames, width)  utterances back to back
//   K.utterance_frames  int64 (utterances,)      their lengths (sum = frames)
//   K.chunk_frames      int64 ()                 frames per kernel call
//   gated.threshold     float32 ()               the gated run's threshold
//   gated.reference.gates uint8 (frames, 2L)     decisions of the forced run
// out.fgt, per run R: R.out (frames, out width), R.seconds float64 (repeat,)
//   and for the gated encoder's runs also R.probs, R.gates, R.macs,
//   R.attention_rows and R.ff_rows (per layer, one pass).
// Each run is repeated --repeat times (outputs from the first pass, which
// every other pass must reproduce bit for bit); the BLAS's threads follow its
// own environment (OPENBLAS_NUM_THREADS). Exit status: 0, or 2 with one
// "framegate_driver: error: ..." line for bad arguments or files.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gated_encoder.h"
#include "global_cnn_state.h"
#include "kernel_weights.h"
#include "raw_tensors.h"

namespace framegate::tools {
namespace {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --help: print the usage and exit 0.
struct HelpRequested {};

constexpr const char* kUsage =
    "usage: framegate_driver --weights MODEL.fgt --inputs INPUTS.fgt "
    "[--out OUT.fgt] [--runs gated,dense,forced,global_cnn] [--repeat N] "
    "[--threshold X]";

struct Options {
  std::string weights, inputs, out;
  std::vector<std::string> runs;  // empty: every run the files allow
  int repeat = 1;
  std::optional<float> threshold;
};

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

template <typename T>
T ParseNumber(const std::string& flag, const std::string& text) {
  std::istringstream in(text);
  T value{};
  in >> value;
  if (!in || !in.eof()) {
    throw UsageError(flag + " expects a number, got '" + text + "'");
  }
  return value;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") throw HelpRequested{};
    if (i + 1 >= argc) throw UsageError(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--weights") {
      o.weights = value;
    } else if (flag == "--inputs") {
      o.inputs = value;
    } else if (flag == "--out") {
      o.out = value;
    } else if (flag == "--runs") {
      o.runs = SplitCommas(value);
    } else if (flag == "--repeat") {
      o.repeat = ParseNumber<int>(flag, value);
      if (o.repeat < 1 || o.repeat > 100000) {
        throw UsageError("--repeat must be in [1, 100000], got " + value);
      }
    } else if (flag == "--threshold") {
      o.threshold = ParseNumber<float>(flag, value);
    } else {
      throw UsageError("unknown option '" + flag + "' (--help for usage)");
    }
  }
  if (o.weights.empty() || o.inputs.empty()) {
    throw UsageError("--weights and --inputs are required (--help for usage)");
  }
  for (const std::string& run : o.runs) {
    if (run != "gated" && run != "dense" && run != "forced" &&
        run != "global_cnn") {
      throw UsageError("unknown run '" + run +
                       "' (gated, dense, forced or global_cnn)");
    }
  }
  return o;
}

// One kernel's recorded frames, split into utterances.
struct Recording {
  const RawTensor* frames = nullptr;
  std::vector<std::int64_t> utterance_frames;
  int chunk_frames = 0;

  std::int64_t Frames() const { return frames->dims[0]; }
  std::int64_t Width() const { return frames->dims[1]; }
};

Recording ReadRecording(const RawTensorFile& inputs, const std::string& kernel,
                        std::int64_t width) {
  Recording r;
  r.frames = &inputs.Matrix(kernel + ".frames", width);
  const std::string lengths_name = kernel + ".utterance_frames";
  const RawTensor& lengths = inputs.Get(lengths_name);
  if (lengths.dtype != DType::kInt64 || lengths.dims.size() != 1) {
    throw RawTensorError(inputs.source() + ": '" + lengths_name +
                         "' must be int64 (utterances,)");
  }
  std::int64_t total = 0;
  for (std::int64_t n : lengths.i64) {
    if (n < 0 || n > r.Frames()) {
      throw RawTensorError(inputs.source() + ": '" + lengths_name +
                           "' holds a length " + std::to_string(n));
    }
    total += n;
  }
  if (total != r.Frames()) {
    throw RawTensorError(inputs.source() + ": '" + lengths_name + "' sums to " +
                         std::to_string(total) + ", '" + kernel +
                         ".frames' has " + std::to_string(r.Frames()) +
                         " frames");
  }
  r.utterance_frames = lengths.i64;
  const std::int64_t chunk = inputs.Int64Scalar(kernel + ".chunk_frames");
  if (chunk < 1 || chunk > (1 << 20)) {
    throw RawTensorError(inputs.source() + ": '" + kernel +
                         ".chunk_frames' is " + std::to_string(chunk) +
                         ", expected [1, 2^20]");
  }
  r.chunk_frames = static_cast<int>(chunk);
  return r;
}

// Calls `step(offset, n, fresh)` for every chunk of every utterance in order;
// `fresh` is true on an utterance's first chunk.
template <typename Step>
void ForEachChunk(const Recording& rec, Step&& step) {
  std::int64_t offset = 0;
  for (std::int64_t frames : rec.utterance_frames) {
    for (std::int64_t done = 0; done < frames; done += rec.chunk_frames) {
      const auto n = static_cast<int>(
          std::min<std::int64_t>(rec.chunk_frames, frames - done));
      step(offset + done, n, done == 0);
    }
    offset += frames;
  }
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

// What one run produced in its first pass, and every pass's time.
struct RunResult {
  std::vector<float> out, probs;
  std::vector<std::uint8_t> gates;
  std::vector<std::int64_t> attention_rows, ff_rows;
  std::int64_t macs = 0;
  std::vector<double> seconds;
};

RunResult RunGated(const GatedEncoder& encoder, const Recording& rec,
                   GateMode mode, float threshold,
                   const std::vector<std::uint8_t>* forced_gates, int repeat) {
  const GatedEncoderConfig& c = encoder.config();
  const auto frames = static_cast<std::size_t>(rec.Frames());
  const auto g = static_cast<std::size_t>(c.NumGates());
  const auto j = static_cast<std::size_t>(c.joiner_dim);
  const auto d = static_cast<std::size_t>(c.d_model);
  const auto layers = static_cast<std::size_t>(c.num_layers);
  RunResult result;
  std::vector<float> out(frames * j), probs(frames * g);
  std::vector<std::uint8_t> gates(frames * g);
  GatedEncoderState state = encoder.InitialState();
  EncoderCounters counters;
  for (int pass = 0; pass < repeat; ++pass) {
    if (forced_gates) gates = *forced_gates;
    std::vector<std::int64_t> attention_rows(layers, 0), ff_rows(layers, 0);
    std::int64_t macs = 0;
    const auto start = std::chrono::steady_clock::now();
    ForEachChunk(rec, [&](std::int64_t offset, int n, bool fresh) {
      if (fresh) encoder.Reset(&state);
      const auto at = static_cast<std::size_t>(offset);
      encoder.Forward(rec.frames->f32.data() + at * d, n, &state, mode,
                      threshold, out.data() + at * j, probs.data() + at * g,
                      gates.data() + at * g, &counters);
      for (std::size_t l = 0; l < layers; ++l) {
        attention_rows[l] += counters.attention_rows[l];
        ff_rows[l] += counters.ff_rows[l];
      }
      macs += counters.arbitrator_macs + counters.block_macs +
              counters.output_macs;
    });
    result.seconds.push_back(Seconds(start));
    if (pass == 0) {
      result.out = out;
      result.probs = probs;
      result.gates = gates;
      result.attention_rows = attention_rows;
      result.ff_rows = ff_rows;
      result.macs = macs;
    } else if (out != result.out || gates != result.gates) {
      throw std::runtime_error("pass " + std::to_string(pass) +
                               " did not reproduce the first pass");
    }
  }
  return result;
}

RunResult RunGlobalCnn(const GlobalCnn& cnn, const Recording& rec, int repeat) {
  const auto c = static_cast<std::size_t>(cnn.config().channels);
  RunResult result;
  std::vector<float> out(static_cast<std::size_t>(rec.Frames()) * c);
  GlobalCnnState state = cnn.InitialState();
  for (int pass = 0; pass < repeat; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    ForEachChunk(rec, [&](std::int64_t offset, int n, bool fresh) {
      if (fresh) cnn.Reset(&state);
      const auto at = static_cast<std::size_t>(offset) * c;
      cnn.Forward(rec.frames->f32.data() + at, static_cast<std::size_t>(n),
                  &state, out.data() + at);
    });
    result.seconds.push_back(Seconds(start));
    if (pass == 0) {
      result.out = out;
    } else if (out != result.out) {
      throw std::runtime_error("pass " + std::to_string(pass) +
                               " did not reproduce the first pass");
    }
  }
  return result;
}

std::string JsonList(const std::vector<double>& values) {
  std::ostringstream os;
  os.precision(9);
  os << "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    os << (i ? ", " : "") << values[i];
  }
  os << "]";
  return os.str();
}

void Report(const std::string& run, std::int64_t frames, const RunResult& r,
            bool gated_encoder) {
  std::ostringstream os;
  os.precision(9);
  os << "{\"run\": \"" << run << "\", \"frames\": " << frames
     << ", \"seconds\": " << JsonList(r.seconds)
     << ", \"best_s\": " << *std::min_element(r.seconds.begin(), r.seconds.end());
  if (gated_encoder) {
    std::int64_t on = 0;
    for (std::uint8_t gate : r.gates) on += gate;
    os << ", \"macs\": " << r.macs << ", \"fraction_on\": "
       << (r.gates.empty() ? 0.0
                           : static_cast<double>(on) /
                                 static_cast<double>(r.gates.size()));
  }
  os << "}";
  std::printf("%s\n", os.str().c_str());
}

void Store(const std::string& run, RunResult r, std::int64_t frames,
           std::int64_t out_width, std::int64_t gates_width,
           std::map<std::string, RawTensor>* out) {
  const auto repeats = static_cast<std::int64_t>(r.seconds.size());
  (*out)[run + ".out"] = RawTensor::Float32({frames, out_width}, std::move(r.out));
  (*out)[run + ".seconds"] = RawTensor::Float64({repeats}, std::move(r.seconds));
  if (gates_width > 0) {
    const auto layers = static_cast<std::int64_t>(r.attention_rows.size());
    (*out)[run + ".probs"] =
        RawTensor::Float32({frames, gates_width}, std::move(r.probs));
    (*out)[run + ".gates"] =
        RawTensor::Uint8({frames, gates_width}, std::move(r.gates));
    (*out)[run + ".macs"] = RawTensor::Int64({}, {r.macs});
    (*out)[run + ".attention_rows"] =
        RawTensor::Int64({layers}, std::move(r.attention_rows));
    (*out)[run + ".ff_rows"] = RawTensor::Int64({layers}, std::move(r.ff_rows));
  }
}

bool Wanted(const Options& o, const std::string& run) {
  return o.runs.empty() ||
         std::find(o.runs.begin(), o.runs.end(), run) != o.runs.end();
}

int Main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  const RawTensorFile weights = ReadRawTensors(o.weights);
  const RawTensorFile inputs = ReadRawTensors(o.inputs);
  std::map<std::string, RawTensor> results;
  bool ran = false;

  const bool gated_runs =
      Wanted(o, "gated") || Wanted(o, "dense") || Wanted(o, "forced");
  if (gated_runs && (HasGatedEncoder(weights) || !o.runs.empty())) {
    if (!HasGatedEncoder(weights)) {
      throw RawTensorError(o.weights + ": no gated encoder (gated.config.*)");
    }
    GatedEncoderParts parts = ReadGatedEncoder(weights);
    const GatedEncoder encoder(parts.config, std::move(parts.weights));
    const GatedEncoderConfig& c = encoder.config();
    const Recording rec = ReadRecording(inputs, "gated", c.d_model);
    const float threshold =
        o.threshold ? *o.threshold : inputs.Float32Scalar("gated.threshold");
    const std::int64_t frames = rec.Frames(), g = c.NumGates();
    for (const auto& [run, mode] :
         {std::pair<std::string, GateMode>{"gated", GateMode::kGated},
          {"dense", GateMode::kDense},
          {"forced", GateMode::kForced}}) {
      if (!Wanted(o, run)) continue;
      std::vector<std::uint8_t> forced;
      if (mode == GateMode::kForced) {
        const RawTensor& ref = inputs.Get("gated.reference.gates");
        if (ref.dtype != DType::kUint8 ||
            ref.dims != std::vector<std::int64_t>{frames, g}) {
          throw RawTensorError(o.inputs + ": 'gated.reference.gates' must be "
                               "uint8 (" + std::to_string(frames) + ", " +
                               std::to_string(g) + ")");
        }
        forced = ref.u8;
      }
      RunResult r = RunGated(encoder, rec, mode, threshold,
                             mode == GateMode::kForced ? &forced : nullptr,
                             o.repeat);
      Report(run, frames, r, true);
      Store(run, std::move(r), frames, c.joiner_dim, g, &results);
      ran = true;
    }
  }
  if (Wanted(o, "global_cnn") && (HasGlobalCnn(weights) || !o.runs.empty())) {
    if (!HasGlobalCnn(weights)) {
      throw RawTensorError(o.weights + ": no global CNN (global_cnn.config.*)");
    }
    GlobalCnnParts parts = ReadGlobalCnn(weights);
    const GlobalCnn cnn(parts.config, std::move(parts.blocks));
    const Recording rec =
        ReadRecording(inputs, "global_cnn", cnn.config().channels);
    RunResult r = RunGlobalCnn(cnn, rec, o.repeat);
    Report("global_cnn", rec.Frames(), r, false);
    Store("global_cnn", std::move(r), rec.Frames(), cnn.config().channels, 0,
          &results);
    ran = true;
  }
  if (!ran) {
    throw RawTensorError(o.weights + ": holds neither a gated encoder nor a "
                         "global CNN config");
  }
  if (!o.out.empty()) WriteRawTensors(o.out, results);
  return 0;
}

}  // namespace
}  // namespace framegate::tools

int main(int argc, char** argv) {
  try {
    return framegate::tools::Main(argc, argv);
  } catch (const framegate::tools::HelpRequested&) {
    std::printf("%s\n", framegate::tools::kUsage);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "framegate_driver: error: %s\n", e.what());
    return 2;
  }
}
