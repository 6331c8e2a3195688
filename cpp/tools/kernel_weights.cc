#include "kernel_weights.h"

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gated_encoder_layout.h"
#include "global_cnn_layout.h"

namespace framegate::tools {
namespace {

constexpr const char* kGatedPrefix = "gated.";
constexpr const char* kGlobalCnnPrefix = "global_cnn.";

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Takes a kernel's tensors by name and, at the end, refuses any tensor under
// the kernel's prefix that was not taken (a file for another config).
class Reader {
 public:
  Reader(const RawTensorFile& file, std::string prefix)
      : file_(file), prefix_(std::move(prefix)) {}

  int Int(const std::string& key) {
    const std::string name = prefix_ + "config." + key;
    used_.insert(name);
    const std::int64_t v = file_.Int64Scalar(name);
    if (v < std::numeric_limits<int>::min() ||
        v > std::numeric_limits<int>::max()) {
      throw RawTensorError(file_.source() + ": '" + name + "' = " +
                           std::to_string(v) + " does not fit an int");
    }
    return static_cast<int>(v);
  }

  double Double(const std::string& key) {
    const std::string name = prefix_ + "config." + key;
    used_.insert(name);
    return file_.Float64Scalar(name);
  }

  std::vector<float> Take(const std::string& key,
                          const std::vector<std::int64_t>& dims) {
    const std::string name = prefix_ + key;
    used_.insert(name);
    return file_.Float32(name, dims);
  }

  void CheckAllUsed() const {
    for (const auto& item : file_.tensors()) {
      if (StartsWith(item.first, prefix_) && !used_.count(item.first)) {
        throw RawTensorError(file_.source() + ": unexpected tensor '" +
                             item.first + "' for this config");
      }
    }
  }

 private:
  const RawTensorFile& file_;
  std::string prefix_;
  std::set<std::string> used_;
};

// One global-CNN block's view of a Reader (the Source global_cnn_layout.h
// takes): key -> block{b}.{key}.
class BlockReader {
 public:
  BlockReader(Reader& reader, std::string prefix)
      : reader_(reader), prefix_(std::move(prefix)) {}

  std::vector<float> Take(const std::string& key,
                          const std::vector<std::int64_t>& dims) {
    return reader_.Take(prefix_ + key, dims);
  }

 private:
  Reader& reader_;
  std::string prefix_;
};

ArbitratorKind Arbitrator(int code, const std::string& source) {
  switch (code) {
    case 0:
      return ArbitratorKind::kNone;
    case 1:
      return ArbitratorKind::kFeature;
    case 2:
      return ArbitratorKind::kBlock;
    default:
      throw RawTensorError(source + ": gated.config.arbitrator is " +
                           std::to_string(code) +
                           ", expected 0 (none), 1 (feature) or 2 (block)");
  }
}

}  // namespace

bool HasGatedEncoder(const RawTensorFile& file) {
  return file.Has(std::string(kGatedPrefix) + "config.d_model");
}

bool HasGlobalCnn(const RawTensorFile& file) {
  return file.Has(std::string(kGlobalCnnPrefix) + "config.channels");
}

GatedEncoderParts ReadGatedEncoder(const RawTensorFile& file) {
  Reader r(file, kGatedPrefix);
  GatedEncoderParts parts;
  GatedEncoderConfig& c = parts.config;
  c.d_model = r.Int("d_model");
  c.num_heads = r.Int("num_heads");
  c.ff_dim = r.Int("ff_dim");
  c.num_layers = r.Int("num_layers");
  c.left_context = r.Int("left_context");
  c.joiner_dim = r.Int("joiner_dim");
  c.max_rows = r.Int("max_rows");
  c.arbitrator = Arbitrator(r.Int("arbitrator"), file.source());
  c.arbitrator_kernel = r.Int("arbitrator_kernel");
  c.arbitrator_hidden = r.Int("arbitrator_hidden");
  parts.weights = TakeGatedEncoderWeights(c, r);
  return parts;
}

GlobalCnnParts ReadGlobalCnn(const RawTensorFile& file) {
  Reader r(file, kGlobalCnnPrefix);
  GlobalCnnParts parts;
  GlobalCnnConfig& c = parts.config;
  c.channels = r.Int("channels");
  c.hidden = r.Int("hidden");
  c.se_hidden = r.Int("se_hidden");
  c.num_blocks = r.Int("num_blocks");
  const int squeeze = r.Int("squeeze");
  if (squeeze != 0 && squeeze != 1) {
    throw RawTensorError(file.source() + ": global_cnn.config.squeeze is " +
                         std::to_string(squeeze) +
                         ", expected 0 (cumulative) or 1 (ema)");
  }
  c.squeeze = squeeze == 0 ? SqueezeMode::kCumulative : SqueezeMode::kEma;
  c.ema_decay = r.Double("ema_decay");
  c.Validate();

  for (int b = 0; b < c.num_blocks; ++b) {
    BlockReader block(r, "block" + std::to_string(b) + ".");
    parts.blocks.push_back(TakeGlobalCnnBlockWeights(c, block));
  }
  r.CheckAllUsed();
  return parts;
}

}  // namespace framegate::tools
