#include "kernel_weights.h"

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>

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
  c.Validate();

  const std::int64_t d = c.d_model, f = c.ff_dim, h = c.arbitrator_hidden;
  GatedEncoderWeights& w = parts.weights;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "block" + std::to_string(l) + ".";
    GatedBlockWeights b;
    b.norm_att_weight = r.Take(p + "norm_att_weight", {d});
    b.norm_att_bias = r.Take(p + "norm_att_bias", {d});
    b.qkv_weight = r.Take(p + "qkv_weight", {3 * d, d});
    b.qkv_bias = r.Take(p + "qkv_bias", {3 * d});
    b.att_out_weight = r.Take(p + "att_out_weight", {d, d});
    b.att_out_bias = r.Take(p + "att_out_bias", {d});
    b.norm_ff_weight = r.Take(p + "norm_ff_weight", {d});
    b.norm_ff_bias = r.Take(p + "norm_ff_bias", {d});
    b.ff1_weight = r.Take(p + "ff1_weight", {f, d});
    b.ff1_bias = r.Take(p + "ff1_bias", {f});
    b.ff2_weight = r.Take(p + "ff2_weight", {d, f});
    b.ff2_bias = r.Take(p + "ff2_bias", {d});
    w.blocks.push_back(std::move(b));
    if (c.arbitrator == ArbitratorKind::kBlock) {
      w.block_arbitrators.push_back(BlockArbitratorWeights{
          r.Take(p + "arbitrator.hidden_weight", {h, d}),
          r.Take(p + "arbitrator.hidden_bias", {h}),
          r.Take(p + "arbitrator.out_weight", {2, h}),
          r.Take(p + "arbitrator.out_bias", {2})});
    }
  }
  if (c.arbitrator == ArbitratorKind::kFeature) {
    const std::int64_t g = c.NumGates(), k = c.arbitrator_kernel;
    w.feature_arbitrator = FeatureArbitratorWeights{
        r.Take("feature_arbitrator.conv_weight", {h, k, d}),
        r.Take("feature_arbitrator.conv_bias", {h}),
        r.Take("feature_arbitrator.out_weight", {g, h}),
        r.Take("feature_arbitrator.out_bias", {g})};
  }
  w.norm_out_weight = r.Take("norm_out_weight", {d});
  w.norm_out_bias = r.Take("norm_out_bias", {d});
  w.out_weight = r.Take("out_weight", {c.joiner_dim, d});
  w.out_bias = r.Take("out_bias", {c.joiner_dim});
  r.CheckAllUsed();
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

  const std::int64_t ch = c.channels, h = c.hidden, s = c.se_hidden;
  for (int b = 0; b < c.num_blocks; ++b) {
    const std::string p = "block" + std::to_string(b) + ".";
    GlobalCnnBlockWeights w;
    w.pw1_weight = r.Take(p + "pw1_weight", {h, ch});
    w.pw1_bias = r.Take(p + "pw1_bias", {h});
    w.dw_weight = r.Take(p + "dw_weight", {h, 3});
    w.dw_bias = r.Take(p + "dw_bias", {h});
    w.pw2_weight = r.Take(p + "pw2_weight", {ch, h});
    w.pw2_bias = r.Take(p + "pw2_bias", {ch});
    w.se1_weight = r.Take(p + "se1_weight", {s, ch});
    w.se1_bias = r.Take(p + "se1_bias", {s});
    w.se2_weight = r.Take(p + "se2_weight", {ch, s});
    w.se2_bias = r.Take(p + "se2_bias", {ch});
    parts.blocks.push_back(std::move(w));
  }
  r.CheckAllUsed();
  return parts;
}

}  // namespace framegate::tools
