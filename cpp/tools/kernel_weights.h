// The kernels' configs and weights from a raw tensor file (raw_tensors.h),
// under the names the bundle gives them (DESIGN.md, "Weights for C++
// kernels"): the gated encoder's `gated.{key}` (kernels/gated_encoder.py,
// tensor_shapes) and the global CNN's `global_cnn.block{b}.{key}`
// (kernels/global_cnn_state.py), plus each kernel's config as int64 scalars:
//   gated.config.{d_model, num_heads, ff_dim, num_layers, left_context,
//                 joiner_dim, max_rows, arbitrator (0 none, 1 feature,
//                 2 block), arbitrator_kernel, arbitrator_hidden}
//   global_cnn.config.{channels, hidden, se_hidden, num_blocks,
//                      squeeze (0 cumulative, 1 ema)}, and
//   global_cnn.config.ema_decay as a float64 scalar.
// The weights' names and shapes are gated_encoder_layout.h's and
// global_cnn_layout.h's, shared with the Python binding.
// kernels/raw_tensors.py writes these names. A missing, misshapen or
// unexpected tensor under a kernel's prefix is a RawTensorError naming it.
#ifndef FRAMEGATE_CPP_TOOLS_KERNEL_WEIGHTS_H_
#define FRAMEGATE_CPP_TOOLS_KERNEL_WEIGHTS_H_

#include <vector>

#include "gated_encoder.h"
#include "global_cnn_state.h"
#include "raw_tensors.h"

namespace framegate::tools {

// True when `file` holds the kernel's config (its weights are then required).
bool HasGatedEncoder(const RawTensorFile& file);
bool HasGlobalCnn(const RawTensorFile& file);

struct GatedEncoderParts {
  GatedEncoderConfig config;
  GatedEncoderWeights weights;
};

struct GlobalCnnParts {
  GlobalCnnConfig config;
  std::vector<GlobalCnnBlockWeights> blocks;
};

GatedEncoderParts ReadGatedEncoder(const RawTensorFile& file);
GlobalCnnParts ReadGlobalCnn(const RawTensorFile& file);

}  // namespace framegate::tools

#endif  // FRAMEGATE_CPP_TOOLS_KERNEL_WEIGHTS_H_
