// libFuzzer harness for the Python-free driver's file format
// (tools/raw_tensors.h) and for reading kernel weights from it
// (tools/kernel_weights.h): the bytes an ARM board reads from disk.
//
// Build and run: cpp/build_checks.sh fuzz, then
//   build/checks/fuzz/raw_tensors_fuzz -max_total_time=60 cpp/fuzz/regressions/raw_tensors
//
// Each input is one of three things:
//   0. a file image (half of the time behind a valid header). Parsing either throws RawTensorError or
//      returns tensors that serialize back to a file of the same size and
//      parse again to the same tensors; every typed accessor either answers
//      consistently or throws RawTensorError. A parsed file holding a kernel
//      config is read as kernel weights too.
//   1. tensors built from the input (names, dtypes, shapes with zero and huge
//      dimensions, raw value bits), serialized: writing either throws
//      RawTensorError or produces a file that reads back to the same tensors
//      byte for byte (what the writer accepts, the reader accepts).
//   2. a driver weights file for a small gated encoder or global CNN, written
//      from the kernels' own layouts (gated_encoder_layout.h,
//      global_cnn_layout.h), then edited by the input (a tensor dropped or
//      added, a config scalar set to any value, a dtype or shape changed, a
//      NaN poked in, bytes flipped or cut off). Unedited, it must read back to
//      the very weights written and run; edited, reading and building the
//      kernel either succeed or throw RawTensorError / std::invalid_argument.
// Anything else (another exception, a sanitizer report) aborts.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz_support.h"
#include "gated_encoder_layout.h"
#include "global_cnn_layout.h"
#include "kernel_weights.h"
#include "raw_tensors.h"

namespace {

using namespace framegate;
using namespace framegate::tools;
using framegate::fuzz::Require;
using Tensors = std::map<std::string, RawTensor>;
using Bytes = std::vector<std::uint8_t>;

// Kernels whose state would exceed this many floats are built but not run:
// a file may legitimately ask for a long context, the harness stays fast.
constexpr std::size_t kMaxStateFloats = std::size_t{1} << 20;

// The tensor's values as the bytes the format stores.
Bytes ValueBytes(const RawTensor& t) {
  return SerializeRawTensors({{"v", t}});
}

bool SameTensors(const Tensors& a, const Tensors& b) {
  if (a.size() != b.size()) return false;
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (i->first != j->first || i->second.dtype != j->second.dtype ||
        i->second.dims != j->second.dims ||
        ValueBytes(i->second) != ValueBytes(j->second)) {
      return false;
    }
  }
  return true;
}

template <typename Call>
void ExpectRawTensorErrorOr(Call&& call) {
  try {
    call();
  } catch (const RawTensorError&) {
  }
}

// Every typed accessor on every tensor: the right type and shape answers,
// anything else throws RawTensorError.
void ExerciseAccessors(const RawTensorFile& file) {
  for (const auto& item : file.tensors()) {
    const std::string& name = item.first;
    const RawTensor& t = item.second;
    Require(file.Has(name) && &file.Get(name) == &t);
    const bool f32 = t.dtype == DType::kFloat32;
    const bool scalar = t.dims.empty();
    ExpectRawTensorErrorOr([&] {
      Require(file.Float32(name, t.dims).size() == t.NumElements() && f32);
    });
    ExpectRawTensorErrorOr([&] {
      const RawTensor& m = file.Matrix(name, t.dims.size() == 2 ? t.dims[1] : 1);
      Require(f32 && m.dims.size() == 2);
    });
    ExpectRawTensorErrorOr([&] {
      file.Int64Scalar(name);
      Require(t.dtype == DType::kInt64 && scalar);
    });
    ExpectRawTensorErrorOr([&] {
      file.Float64Scalar(name);
      Require(t.dtype == DType::kFloat64 && scalar);
    });
    ExpectRawTensorErrorOr([&] {
      file.Float32Scalar(name);
      Require(f32 && scalar);
    });
  }
  ExpectRawTensorErrorOr([&] {
    file.Get("no such tensor");
    Require(file.Has("no such tensor"));
  });
}

// Runs a few frames through a built kernel, unless its state is huge.
void RunGatedEncoder(const GatedEncoder& enc) {
  const GatedEncoderConfig& c = enc.config();
  const std::size_t state_floats =
      static_cast<std::size_t>(c.left_context + c.max_rows) *
      static_cast<std::size_t>(c.d_model) * static_cast<std::size_t>(c.num_layers);
  if (state_floats > kMaxStateFloats) return;
  constexpr int kFrames = 3;
  const auto g = static_cast<std::size_t>(c.NumGates());
  std::vector<float> frames(kFrames * static_cast<std::size_t>(c.d_model), 0.25f);
  std::vector<float> out(kFrames * static_cast<std::size_t>(c.joiner_dim));
  std::vector<float> probs(kFrames * g);
  std::vector<std::uint8_t> gates(kFrames * g);
  GatedEncoderState state = enc.InitialState();
  EncoderCounters counters;
  enc.Forward(frames.data(), kFrames, &state, GateMode::kGated, 0.5f, out.data(),
              probs.data(), gates.data(), &counters);
  Require(counters.frames == kFrames && state.frames == kFrames);
}

void RunGlobalCnn(const GlobalCnn& cnn) {
  constexpr std::size_t kFrames = 3;
  const auto c = static_cast<std::size_t>(cnn.config().channels);
  std::vector<float> frames(kFrames * c, 0.25f), out(kFrames * c);
  GlobalCnnState state = cnn.InitialState();
  cnn.Forward(frames.data(), kFrames, &state, out.data());
  Require(state.frames == static_cast<std::int64_t>(kFrames));
}

// Reads whichever kernels the file configures, builds and runs them. When
// `must_work`, nothing may throw; otherwise only the documented errors may.
void ReadKernels(const RawTensorFile& file, bool must_work) {
  try {
    if (HasGatedEncoder(file)) {
      GatedEncoderParts parts = ReadGatedEncoder(file);
      RunGatedEncoder(GatedEncoder(parts.config, std::move(parts.weights)));
    }
    if (HasGlobalCnn(file)) {
      GlobalCnnParts parts = ReadGlobalCnn(file);
      RunGlobalCnn(GlobalCnn(parts.config, std::move(parts.blocks)));
    }
  } catch (const RawTensorError&) {
    Require(!must_work);
  } catch (const std::invalid_argument&) {
    Require(!must_work);
  }
}

// Parses a file image: nothing when it is refused; otherwise its tensors,
// once they have round-tripped and answered every accessor.
std::optional<RawTensorFile> ParseAndCheck(const Bytes& image) {
  std::optional<RawTensorFile> file;
  try {
    file = ParseRawTensors(image, "fuzz.fgt");
  } catch (const RawTensorError&) {
    return std::nullopt;
  }
  const Bytes again = SerializeRawTensors(file->tensors());
  Require(again.size() == image.size());  // the same records, in name order
  Require(SameTensors(ParseRawTensors(again, "again").tensors(), file->tensors()));
  ExerciseAccessors(*file);
  return file;
}

// Raw bytes, half of the time behind a valid header so that the fuzzer's
// effort goes to the records.
void FuzzFileImage(FuzzedDataProvider& data) {
  Bytes image;
  if (data.ConsumeBool()) {
    image.assign(std::begin(kRawTensorMagic), std::end(kRawTensorMagic));
    image.insert(image.end(), {kRawTensorVersion, 0, 0, 0});
  }
  const Bytes rest = data.ConsumeRemainingBytes<std::uint8_t>();
  image.insert(image.end(), rest.begin(), rest.end());
  if (const std::optional<RawTensorFile> file = ParseAndCheck(image)) ReadKernels(*file, false);
}

// A dimension: small, zero, or large enough to overflow a product.
std::int64_t Dim(FuzzedDataProvider& data) {
  constexpr std::int64_t kDims[] = {0, 1, 2, 3, 5, -1,
                                    std::int64_t{1} << 32, (std::int64_t{1} << 40),
                                    (std::int64_t{1} << 40) + 1, std::int64_t{1} << 62};
  return data.PickValueInArray(kDims);
}

void FuzzWriter(FuzzedDataProvider& data) {
  constexpr const char* kNames[] = {"", "w", "gated.config.d_model", "global_cnn.block0.pw1_weight"};
  Tensors tensors;
  const int count = data.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < count; ++i) {
    std::string name = data.ConsumeBool() ? std::string(data.PickValueInArray(kNames))
                                          : data.ConsumeRandomLengthString(12);
    RawTensor t;
    t.dtype = static_cast<DType>(data.ConsumeIntegralInRange<std::uint32_t>(1, 4));
    const auto ndim = data.ConsumeIntegralInRange<std::size_t>(0, kMaxDims + 1);
    long double elements = 1;  // exact enough to tell "small" from "huge"
    for (std::size_t k = 0; k < ndim; ++k) {
      t.dims.push_back(Dim(data));
      elements *= static_cast<long double>(t.dims.back());
    }
    // A negative or huge shape gets no values: writing must refuse it.
    const auto n = static_cast<std::size_t>(elements > 0 && elements <= 64 ? elements : 0);
    const Bytes raw = data.ConsumeBytes<std::uint8_t>(n * ItemSize(t.dtype));
    Bytes bits(n * ItemSize(t.dtype), 0);
    std::copy(raw.begin(), raw.end(), bits.begin());
    switch (t.dtype) {
      case DType::kFloat32:
        t.f32.resize(n);
        if (n) std::memcpy(t.f32.data(), bits.data(), bits.size());
        break;
      case DType::kFloat64:
        t.f64.resize(n);
        if (n) std::memcpy(t.f64.data(), bits.data(), bits.size());
        break;
      case DType::kInt64:
        t.i64.resize(n);
        if (n) std::memcpy(t.i64.data(), bits.data(), bits.size());
        break;
      case DType::kUint8:
        t.u8 = bits;
        break;
    }
    tensors[name] = std::move(t);
  }
  Bytes image;
  try {
    image = SerializeRawTensors(tensors);
  } catch (const RawTensorError&) {
    return;
  }
  const RawTensorFile file = ParseRawTensors(image, "written.fgt");
  Require(SameTensors(file.tensors(), tensors));
  Require(SerializeRawTensors(file.tensors()) == image);
}

// Records what a layout takes as float32 tensors under `prefix`, with values
// from the input: the writer's side of TakeGatedEncoderWeights and
// TakeGlobalCnnBlockWeights.
class WritingSource {
 public:
  WritingSource(std::string prefix, fuzz::ValueSource& values, Tensors* out)
      : prefix_(std::move(prefix)), values_(values), out_(out) {}

  std::vector<float> Take(const std::string& key, const std::vector<std::int64_t>& dims) {
    std::size_t n = 1;
    for (std::int64_t d : dims) n *= static_cast<std::size_t>(d);
    std::vector<float> v = values_.Fill(n);
    for (float& x : v) {
      if (!std::isfinite(x)) x = 0.0f;  // NaN comes in through an edit
    }
    (*out_)[prefix_ + key] = RawTensor::Float32(dims, v);
    return v;
  }
  void CheckAllUsed() const {}

 private:
  std::string prefix_;
  fuzz::ValueSource& values_;
  Tensors* out_;
};

RawTensor IntScalar(std::int64_t v) { return RawTensor::Int64({}, {v}); }

bool SameBlock(const GatedBlockWeights& a, const GatedBlockWeights& b) {
  return a.norm_att_weight == b.norm_att_weight && a.norm_att_bias == b.norm_att_bias &&
         a.qkv_weight == b.qkv_weight && a.qkv_bias == b.qkv_bias &&
         a.att_out_weight == b.att_out_weight && a.att_out_bias == b.att_out_bias &&
         a.norm_ff_weight == b.norm_ff_weight && a.norm_ff_bias == b.norm_ff_bias &&
         a.ff1_weight == b.ff1_weight && a.ff1_bias == b.ff1_bias &&
         a.ff2_weight == b.ff2_weight && a.ff2_bias == b.ff2_bias;
}

bool SameWeights(const GatedEncoderWeights& a, const GatedEncoderWeights& b) {
  if (a.blocks.size() != b.blocks.size() ||
      a.block_arbitrators.size() != b.block_arbitrators.size() ||
      a.feature_arbitrator.has_value() != b.feature_arbitrator.has_value()) {
    return false;
  }
  for (std::size_t l = 0; l < a.blocks.size(); ++l) {
    if (!SameBlock(a.blocks[l], b.blocks[l])) return false;
  }
  for (std::size_t l = 0; l < a.block_arbitrators.size(); ++l) {
    const BlockArbitratorWeights &x = a.block_arbitrators[l], &y = b.block_arbitrators[l];
    if (x.hidden_weight != y.hidden_weight || x.hidden_bias != y.hidden_bias ||
        x.out_weight != y.out_weight || x.out_bias != y.out_bias) {
      return false;
    }
  }
  if (a.feature_arbitrator) {
    const FeatureArbitratorWeights &x = *a.feature_arbitrator, &y = *b.feature_arbitrator;
    if (x.conv_weight != y.conv_weight || x.conv_bias != y.conv_bias ||
        x.out_weight != y.out_weight || x.out_bias != y.out_bias) {
      return false;
    }
  }
  return a.norm_out_weight == b.norm_out_weight && a.norm_out_bias == b.norm_out_bias &&
         a.out_weight == b.out_weight && a.out_bias == b.out_bias;
}

bool SameBlocks(const std::vector<GlobalCnnBlockWeights>& a,
                const std::vector<GlobalCnnBlockWeights>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const GlobalCnnBlockWeights &x = a[i], &y = b[i];
    if (x.norm_weight != y.norm_weight || x.norm_bias != y.norm_bias ||
        x.pw1_weight != y.pw1_weight || x.pw1_bias != y.pw1_bias ||
        x.dw_weight != y.dw_weight || x.dw_bias != y.dw_bias ||
        x.pw2_weight != y.pw2_weight || x.pw2_bias != y.pw2_bias ||
        x.se1_weight != y.se1_weight || x.se1_bias != y.se1_bias ||
        x.se2_weight != y.se2_weight || x.se2_bias != y.se2_bias) {
      return false;
    }
  }
  return true;
}

// A valid gated encoder file (config scalars + weights); returns the weights.
GatedEncoderWeights WriteGatedEncoder(FuzzedDataProvider& data, fuzz::ValueSource& values,
                                      GatedEncoderConfig* c, Tensors* out) {
  c->num_heads = data.ConsumeIntegralInRange<int>(1, 2);
  c->d_model = c->num_heads * data.ConsumeIntegralInRange<int>(1, 3);
  c->ff_dim = data.ConsumeIntegralInRange<int>(1, 4);
  c->num_layers = data.ConsumeIntegralInRange<int>(1, 2);
  c->left_context = data.ConsumeIntegralInRange<int>(0, 3);
  c->joiner_dim = data.ConsumeIntegralInRange<int>(1, 3);
  c->max_rows = data.ConsumeIntegralInRange<int>(1, 4);
  const int kind = data.ConsumeIntegralInRange<int>(0, 2);
  c->arbitrator = static_cast<ArbitratorKind>(kind);
  c->arbitrator_kernel = data.ConsumeIntegralInRange<int>(1, 3);
  c->arbitrator_hidden = data.ConsumeIntegralInRange<int>(1, 3);
  const std::pair<const char*, int> scalars[] = {
      {"d_model", c->d_model}, {"num_heads", c->num_heads}, {"ff_dim", c->ff_dim},
      {"num_layers", c->num_layers}, {"left_context", c->left_context},
      {"joiner_dim", c->joiner_dim}, {"max_rows", c->max_rows}, {"arbitrator", kind},
      {"arbitrator_kernel", c->arbitrator_kernel},
      {"arbitrator_hidden", c->arbitrator_hidden}};
  for (const auto& [key, v] : scalars) (*out)[std::string("gated.config.") + key] = IntScalar(v);
  WritingSource source("gated.", values, out);
  return TakeGatedEncoderWeights(*c, source);
}

std::vector<GlobalCnnBlockWeights> WriteGlobalCnn(FuzzedDataProvider& data,
                                                  fuzz::ValueSource& values,
                                                  GlobalCnnConfig* c, Tensors* out) {
  c->channels = data.ConsumeIntegralInRange<int>(1, 4);
  c->hidden = data.ConsumeIntegralInRange<int>(1, 4);
  c->se_hidden = data.ConsumeIntegralInRange<int>(1, 3);
  c->num_blocks = data.ConsumeIntegralInRange<int>(1, 3);
  const bool ema = data.ConsumeBool();
  c->squeeze = ema ? SqueezeMode::kEma : SqueezeMode::kCumulative;
  c->ema_decay = 0.9;
  const std::pair<const char*, int> scalars[] = {
      {"channels", c->channels}, {"hidden", c->hidden}, {"se_hidden", c->se_hidden},
      {"num_blocks", c->num_blocks}, {"squeeze", ema ? 1 : 0}};
  for (const auto& [key, v] : scalars) {
    (*out)[std::string("global_cnn.config.") + key] = IntScalar(v);
  }
  (*out)["global_cnn.config.ema_decay"] = RawTensor::Float64({}, {c->ema_decay});
  std::vector<GlobalCnnBlockWeights> blocks;
  for (int b = 0; b < c->num_blocks; ++b) {
    WritingSource source("global_cnn.block" + std::to_string(b) + ".", values, out);
    blocks.push_back(TakeGlobalCnnBlockWeights(*c, source));
  }
  return blocks;
}

// One edit of a written file's tensors; false when it changed nothing.
bool EditTensors(FuzzedDataProvider& data, Tensors* tensors) {
  if (tensors->empty()) return false;
  auto it = tensors->begin();
  std::advance(it, data.ConsumeIntegralInRange<std::size_t>(0, tensors->size() - 1));
  RawTensor& t = it->second;
  switch (data.ConsumeIntegralInRange<int>(0, 5)) {
    case 0:
      tensors->erase(it);
      return true;
    case 1:
      (*tensors)[it->first.substr(0, it->first.find('.') + 1) + "unexpected"] =
          RawTensor::Float32({1}, {0.0f});
      return true;
    case 2:  // any value where a config scalar is
      if (t.dtype == DType::kInt64) {
        t.i64[0] = data.ConsumeIntegral<std::int64_t>();
      } else if (t.dtype == DType::kFloat64) {
        t.f64[0] = data.ConsumeFloatingPoint<double>();
      } else {
        return false;
      }
      return true;
    case 3:  // another dtype, same shape
      if (t.dtype != DType::kFloat32) return false;
      t.f64.assign(t.f32.begin(), t.f32.end());
      t.f32.clear();
      t.dtype = DType::kFloat64;
      return true;
    case 4:  // another shape, same values
      t.dims.push_back(1);
      return true;
    default:  // an edge value poked in
      if (t.dtype != DType::kFloat32 || t.f32.empty()) return false;
      t.f32[data.ConsumeIntegralInRange<std::size_t>(0, t.f32.size() - 1)] =
          data.PickValueInArray(fuzz::kEdgeValues);
      return true;
  }
}

void FuzzKernelFile(FuzzedDataProvider& data) {
  fuzz::ValueSource values(data);
  Tensors tensors;
  GatedEncoderConfig gated_config;
  GlobalCnnConfig cnn_config;
  const int which = data.ConsumeIntegralInRange<int>(1, 3);  // bits: gated, cnn
  GatedEncoderWeights gated;
  std::vector<GlobalCnnBlockWeights> blocks;
  if (which & 1) gated = WriteGatedEncoder(data, values, &gated_config, &tensors);
  if (which & 2) blocks = WriteGlobalCnn(data, values, &cnn_config, &tensors);

  bool edited = false;
  const int edits = data.ConsumeIntegralInRange<int>(0, 3);
  for (int e = 0; e < edits; ++e) edited |= EditTensors(data, &tensors);
  Bytes image = SerializeRawTensors(tensors);
  bool corrupted = false;
  if (data.ConsumeBool()) {  // bytes flipped or cut off after writing
    const auto at = data.ConsumeIntegralInRange<std::size_t>(0, image.size() - 1);
    if (data.ConsumeBool()) {
      image.resize(at);
    } else {
      image[at] ^= static_cast<std::uint8_t>(data.ConsumeIntegralInRange<int>(1, 255));
    }
    corrupted = true;
  }

  const std::optional<RawTensorFile> parsed = ParseAndCheck(image);
  if (!parsed) {
    Require(corrupted);
    return;
  }
  const RawTensorFile& file = *parsed;
  if (edited || corrupted) {
    ReadKernels(file, false);
    return;
  }
  Require(SameTensors(file.tensors(), tensors));
  if (which & 1) {
    Require(HasGatedEncoder(file));
    GatedEncoderParts parts = ReadGatedEncoder(file);
    Require(parts.config.ToString() == gated_config.ToString());
    Require(SameWeights(parts.weights, gated));
  }
  if (which & 2) {
    Require(HasGlobalCnn(file));
    const GlobalCnnParts parts = ReadGlobalCnn(file);
    Require(parts.config.ToString() == cnn_config.ToString());
    Require(SameBlocks(parts.blocks, blocks));
  }
  ReadKernels(file, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider data(bytes, size);
  switch (data.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      FuzzFileImage(data);
      break;
    case 1:
      FuzzWriter(data);
      break;
    default:
      FuzzKernelFile(data);
      break;
  }
  return 0;
}
