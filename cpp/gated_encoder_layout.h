// The gated encoder's weight layout: which tensors a config needs, under
// which names (block{l}.qkv_weight, feature_arbitrator.conv_weight, ...) and
// with which row-major shapes, as kernels/gated_encoder.py's tensor_shapes
// documents them. Written once here for every reader of weights: the Python
// binding (a dict of arrays) and the Python-free driver (a raw tensor file).
//
// A Source offers
//   std::vector<float> Take(const std::string& name,
//                           const std::vector<std::int64_t>& dims);
//   void CheckAllUsed() const;
// Take returns the named tensor's values once it has exactly the shape
// `dims` and throws (naming it) when it is missing or misshapen;
// CheckAllUsed throws when the source holds a tensor that was not taken (a
// file or dict for another config). Values (finiteness) are the
// GatedEncoder constructor's to check.
#ifndef FRAMEGATE_CPP_GATED_ENCODER_LAYOUT_H_
#define FRAMEGATE_CPP_GATED_ENCODER_LAYOUT_H_

#include <cstdint>
#include <string>
#include <utility>

#include "gated_encoder.h"

namespace framegate {

// Validates `c` (its sizes give the shapes), takes every tensor it needs
// from `source`, then refuses any tensor left over.
template <class Source>
GatedEncoderWeights TakeGatedEncoderWeights(const GatedEncoderConfig& c,
                                            Source& source) {
  c.Validate();
  const std::int64_t d = c.d_model, f = c.ff_dim, h = c.arbitrator_hidden;
  GatedEncoderWeights w;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "block" + std::to_string(l) + ".";
    GatedBlockWeights b;
    b.norm_att_weight = source.Take(p + "norm_att_weight", {d});
    b.norm_att_bias = source.Take(p + "norm_att_bias", {d});
    b.qkv_weight = source.Take(p + "qkv_weight", {3 * d, d});
    b.qkv_bias = source.Take(p + "qkv_bias", {3 * d});
    b.att_out_weight = source.Take(p + "att_out_weight", {d, d});
    b.att_out_bias = source.Take(p + "att_out_bias", {d});
    b.norm_ff_weight = source.Take(p + "norm_ff_weight", {d});
    b.norm_ff_bias = source.Take(p + "norm_ff_bias", {d});
    b.ff1_weight = source.Take(p + "ff1_weight", {f, d});
    b.ff1_bias = source.Take(p + "ff1_bias", {f});
    b.ff2_weight = source.Take(p + "ff2_weight", {d, f});
    b.ff2_bias = source.Take(p + "ff2_bias", {d});
    w.blocks.push_back(std::move(b));
    if (c.arbitrator == ArbitratorKind::kBlock) {
      w.block_arbitrators.push_back(BlockArbitratorWeights{
          source.Take(p + "arbitrator.hidden_weight", {h, d}),
          source.Take(p + "arbitrator.hidden_bias", {h}),
          source.Take(p + "arbitrator.out_weight", {2, h}),
          source.Take(p + "arbitrator.out_bias", {2})});
    }
  }
  if (c.arbitrator == ArbitratorKind::kFeature) {
    const std::int64_t g = c.NumGates(), k = c.arbitrator_kernel;
    w.feature_arbitrator = FeatureArbitratorWeights{
        source.Take("feature_arbitrator.conv_weight", {h, k, d}),
        source.Take("feature_arbitrator.conv_bias", {h}),
        source.Take("feature_arbitrator.out_weight", {g, h}),
        source.Take("feature_arbitrator.out_bias", {g})};
  }
  const std::int64_t j = c.joiner_dim;
  w.norm_out_weight = source.Take("norm_out_weight", {d});
  w.norm_out_bias = source.Take("norm_out_bias", {d});
  w.out_weight = source.Take("out_weight", {j, d});
  w.out_bias = source.Take("out_bias", {j});
  source.CheckAllUsed();
  return w;
}

}  // namespace framegate

#endif  // FRAMEGATE_CPP_GATED_ENCODER_LAYOUT_H_
