// The global CNN's weight layout: the tensors of one block by key
// (pw1_weight, ...) with their row-major shapes, as kernels/global_cnn_state.py's
// tensor_shapes documents them. Written once here for every reader of
// weights: the Python binding (one dict of arrays per block) and the
// Python-free driver (global_cnn.block{b}.{key} in a raw tensor file).
//
// A Source offers
//   std::vector<float> Take(const std::string& key,
//                           const std::vector<std::int64_t>& dims);
// returning the block's tensor `key` once it has exactly the shape `dims`,
// and throwing (naming it) when it is missing or misshapen. Values
// (finiteness) are the GlobalCnn constructor's to check.
#ifndef FRAMEGATE_CPP_GLOBAL_CNN_LAYOUT_H_
#define FRAMEGATE_CPP_GLOBAL_CNN_LAYOUT_H_

#include <cstdint>

#include "global_cnn_state.h"

namespace framegate {

// One block's weights from `block`, for a config already validated.
template <class Source>
GlobalCnnBlockWeights TakeGlobalCnnBlockWeights(const GlobalCnnConfig& c,
                                                Source& block) {
  const std::int64_t ch = c.channels, h = c.hidden, s = c.se_hidden;
  GlobalCnnBlockWeights w;
  w.norm_weight = block.Take("norm_weight", {ch});
  w.norm_bias = block.Take("norm_bias", {ch});
  w.pw1_weight = block.Take("pw1_weight", {h, ch});
  w.pw1_bias = block.Take("pw1_bias", {h});
  w.dw_weight = block.Take("dw_weight", {h, 3});
  w.dw_bias = block.Take("dw_bias", {h});
  w.pw2_weight = block.Take("pw2_weight", {ch, h});
  w.pw2_bias = block.Take("pw2_bias", {ch});
  w.se1_weight = block.Take("se1_weight", {s, ch});
  w.se1_bias = block.Take("se1_bias", {s});
  w.se2_weight = block.Take("se2_weight", {ch, s});
  w.se2_bias = block.Take("se2_bias", {ch});
  return w;
}

}  // namespace framegate

#endif  // FRAMEGATE_CPP_GLOBAL_CNN_LAYOUT_H_
