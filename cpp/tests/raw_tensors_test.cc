// Python-free tests of the driver's file format (tools/raw_tensors.h) and of
// reading kernel weights from it (tools/kernel_weights.h), run by ctest (also
// under AddressSanitizer, so "refused, never read out of bounds" is checked
// for every truncation of a valid file).
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "check.h"
#include "kernel_weights.h"
#include "raw_tensors.h"

namespace {

using framegate::testing::RunTests;
using framegate::testing::Throws;
using namespace framegate::tools;
using Bytes = std::vector<std::uint8_t>;

std::map<std::string, RawTensor> Sample() {
  return {{"a.weights", RawTensor::Float32({2, 3}, {1, -2, 3.5f, 0, 1e-30f, -7})},
          {"b.decay", RawTensor::Float64({}, {0.99})},
          {"c.lengths", RawTensor::Int64({3}, {5, -1, 1LL << 40})},
          {"d.gates", RawTensor::Uint8({2, 2}, {0, 1, 1, 0})},
          {"e.empty", RawTensor::Float32({0, 4}, {})}};
}

void PutU32(Bytes* b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) (*b)[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}

// A one-tensor file: header, then the record of `name` (float32, 1 dim).
Bytes OneTensor(const std::string& name, std::uint64_t dim) {
  std::map<std::string, RawTensor> t{
      {name, RawTensor::Float32({static_cast<std::int64_t>(dim)},
                                std::vector<float>(dim, 1.0f))}};
  return SerializeRawTensors(t);
}

void RoundTripKeepsNamesDtypesShapesAndValues() {
  const RawTensorFile f = ParseRawTensors(SerializeRawTensors(Sample()), "mem");
  CHECK(f.tensors().size() == 5);
  CHECK((f.Float32("a.weights", {2, 3}) == std::vector<float>{1, -2, 3.5f, 0, 1e-30f, -7}));
  CHECK(f.Float64Scalar("b.decay") == 0.99);
  CHECK((f.Get("c.lengths").i64 == std::vector<std::int64_t>{5, -1, 1LL << 40}));
  CHECK((f.Get("d.gates").u8 == std::vector<std::uint8_t>{0, 1, 1, 0}));
  CHECK(f.Get("e.empty").NumElements() == 0);
}

void LayoutIsLittleEndianAsDocumented() {
  const Bytes b = SerializeRawTensors({{"x", RawTensor::Float32({1}, {1.0f})}});
  const Bytes expected = {'F', 'G', 'T', 'E', 'N', 'S', 'O', 'R',
                          1, 0, 0, 0,  // version
                          1, 0, 0, 0,  // count
                          1, 0, 0, 0, 'x',
                          1, 0, 0, 0,  // float32
                          1, 0, 0, 0,  // ndim
                          1, 0, 0, 0, 0, 0, 0, 0,
                          0x00, 0x00, 0x80, 0x3f};  // 1.0f
  CHECK(b == expected);
}

void EveryTruncationIsRefusedWithAClearError() {
  const Bytes full = SerializeRawTensors(Sample());
  int refused = 0;
  for (std::size_t n = 0; n < full.size(); ++n) {
    const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    if (Throws<RawTensorError>([&] { ParseRawTensors(cut, "cut.fgt"); }, "cut.fgt: ")) ++refused;
  }
  CHECK(refused == static_cast<int>(full.size()));
  CHECK(ParseRawTensors(full, "f").tensors().size() == 5);
}

void BadHeadersAreNamed() {
  Bytes b = SerializeRawTensors(Sample());
  Bytes magic = b;
  magic[0] = 'X';
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(magic, "m"); }, "not a framegate raw tensor file"));
  Bytes version = b;
  PutU32(&version, 8, 2);
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(version, "v"); }, "format version 2"));
  Bytes trailing = b;
  trailing.push_back(0);
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(trailing, "t"); }, "1 trailing bytes"));
  Bytes count = b;
  PutU32(&count, 12, 0xffffffffu);
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(count, "c"); }, "tensor count"));
}

void HostileRecordsAreRefusedBeforeAllocating() {
  // Record layout of OneTensor("w", 2): name length at 16, name at 20,
  // dtype at 21, ndim at 25, dim at 29, data at 37.
  Bytes huge = OneTensor("w", 2);
  for (int i = 0; i < 8; ++i) huge[29 + static_cast<std::size_t>(i)] = 0xff;
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(huge, "h"); }, "tensor 'w': dimension 0"));
  Bytes big = OneTensor("w", 2);
  big[29] = 0;
  big[33] = 1;  // 2^32 elements: within the dim limit, far beyond the file
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(big, "b"); }, "truncated: tensor 'w'"));
  Bytes dtype = OneTensor("w", 2);
  PutU32(&dtype, 21, 9);
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(dtype, "d"); }, "unknown dtype code 9"));
  Bytes ndim = OneTensor("w", 2);
  PutU32(&ndim, 25, 99);
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(ndim, "n"); }, "99 dimensions"));
  Bytes name = OneTensor("w", 2);
  PutU32(&name, 16, 0);
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(name, "n"); }, "name length 0"));
  Bytes twice = SerializeRawTensors({{"a", RawTensor::Uint8({}, {1})}, {"b", RawTensor::Uint8({}, {2})}});
  // The second record ends: name 'b', dtype (4), ndim (4), one data byte.
  twice[twice.size() - 1 - 4 - 4 - 1] = 'a';
  CHECK(Throws<RawTensorError>([&] { ParseRawTensors(twice, "2"); }, "tensor 'a' appears twice"));
}

void AccessorsNameMissingAndMisshapenTensors() {
  const RawTensorFile f = ParseRawTensors(SerializeRawTensors(Sample()), "s.fgt");
  CHECK(Throws<RawTensorError>([&] { f.Get("nope"); }, "s.fgt: no tensor 'nope'"));
  CHECK(Throws<RawTensorError>([&] { f.Float32("a.weights", {3, 2}); }, "has shape (2, 3), expected (3, 2)"));
  CHECK(Throws<RawTensorError>([&] { f.Int64Scalar("b.decay"); }, "is float64, expected int64"));
  CHECK(Throws<RawTensorError>([&] { f.Matrix("a.weights", 4); }, "expected (frames, 4)"));
  CHECK(Throws<RawTensorError>([] { SerializeRawTensors({{"x", RawTensor::Float32({3}, {1, 2})}}); },
                               "2 values for shape (3,)"));
}

// Found by cpp/fuzz/raw_tensors_fuzz.cc (cpp/fuzz/regressions/raw_tensors/).
void WhatTheWriterWritesTheReaderReads() {
  const std::int64_t big = std::int64_t{1} << 40;  // the reader's largest dimension
  const std::map<std::string, RawTensor> empty{{"e", RawTensor::Float64({big, big, 0}, {})}};
  const RawTensorFile f = ParseRawTensors(SerializeRawTensors(empty), "e");
  CHECK((f.Get("e").dims == std::vector<std::int64_t>{big, big, 0}) && f.Get("e").f64.empty());
  CHECK(Throws<RawTensorError>([&] { SerializeRawTensors({{"w", RawTensor::Float32({big + 1, 0}, {})}}); },
                               "tensor 'w': dimension 1099511627777 exceeds 1099511627776"));
  // 2^32 x 2^32 elements wrap to 0 in 64 bits: not an empty tensor.
  const std::int64_t wrap = std::int64_t{1} << 32;
  CHECK(Throws<RawTensorError>([&] { SerializeRawTensors({{"w", RawTensor::Float32({wrap, wrap}, {})}}); },
                               "has more than 2^64 elements"));
}

std::map<std::string, RawTensor> GlobalCnnTensors() {
  const std::int64_t c = 2, h = 3, s = 1;
  std::map<std::string, RawTensor> t{
      {"global_cnn.config.channels", RawTensor::Int64({}, {c})},
      {"global_cnn.config.hidden", RawTensor::Int64({}, {h})},
      {"global_cnn.config.se_hidden", RawTensor::Int64({}, {s})},
      {"global_cnn.config.num_blocks", RawTensor::Int64({}, {1})},
      {"global_cnn.config.squeeze", RawTensor::Int64({}, {1})},
      {"global_cnn.config.ema_decay", RawTensor::Float64({}, {0.9})}};
  const auto put = [&](const std::string& key, std::vector<std::int64_t> dims) {
    std::size_t n = 1;
    for (std::int64_t d : dims) n *= static_cast<std::size_t>(d);
    t["global_cnn.block0." + key] = RawTensor::Float32(std::move(dims), std::vector<float>(n, 0.5f));
  };
  put("norm_weight", {c});
  put("norm_bias", {c});
  put("pw1_weight", {h, c});
  put("pw1_bias", {h});
  put("dw_weight", {h, 3});
  put("dw_bias", {h});
  put("pw2_weight", {c, h});
  put("pw2_bias", {c});
  put("se1_weight", {s, c});
  put("se1_bias", {s});
  put("se2_weight", {c, s});
  put("se2_bias", {c});
  return t;
}

void KernelWeightsAreReadByTheirBundleNames() {
  const RawTensorFile f = ParseRawTensors(SerializeRawTensors(GlobalCnnTensors()), "g");
  CHECK(HasGlobalCnn(f));
  CHECK(!HasGatedEncoder(f));
  const GlobalCnnParts parts = ReadGlobalCnn(f);
  CHECK(parts.config.squeeze == framegate::SqueezeMode::kEma);
  CHECK(parts.config.ema_decay == 0.9);
  CHECK(parts.blocks.size() == 1 && parts.blocks[0].dw_weight.size() == 9);
}

void KernelWeightsRefuseMissingMisshapenAndUnexpectedTensors() {
  auto missing = GlobalCnnTensors();
  missing.erase("global_cnn.block0.se2_bias");
  CHECK(Throws<RawTensorError>([&] { ReadGlobalCnn(ParseRawTensors(SerializeRawTensors(missing), "m")); },
                               "no tensor 'global_cnn.block0.se2_bias'"));
  auto shape = GlobalCnnTensors();
  shape["global_cnn.block0.dw_weight"] = RawTensor::Float32({3, 2}, std::vector<float>(6, 0.0f));
  CHECK(Throws<RawTensorError>([&] { ReadGlobalCnn(ParseRawTensors(SerializeRawTensors(shape), "s")); },
                               "'global_cnn.block0.dw_weight' has shape (3, 2), expected (3, 3)"));
  auto extra = GlobalCnnTensors();
  extra["global_cnn.block1.pw1_bias"] = RawTensor::Float32({3}, {0, 0, 0});
  CHECK(Throws<RawTensorError>([&] { ReadGlobalCnn(ParseRawTensors(SerializeRawTensors(extra), "e")); },
                               "unexpected tensor 'global_cnn.block1.pw1_bias'"));
  auto squeeze = GlobalCnnTensors();
  squeeze["global_cnn.config.squeeze"] = RawTensor::Int64({}, {7});
  CHECK(Throws<RawTensorError>([&] { ReadGlobalCnn(ParseRawTensors(SerializeRawTensors(squeeze), "q")); },
                               "squeeze is 7"));
}

}  // namespace

int main() {
  return RunTests({
      {"round_trip_keeps_names_dtypes_shapes_and_values", RoundTripKeepsNamesDtypesShapesAndValues},
      {"layout_is_little_endian_as_documented", LayoutIsLittleEndianAsDocumented},
      {"every_truncation_is_refused_with_a_clear_error", EveryTruncationIsRefusedWithAClearError},
      {"bad_headers_are_named", BadHeadersAreNamed},
      {"hostile_records_are_refused_before_allocating", HostileRecordsAreRefusedBeforeAllocating},
      {"accessors_name_missing_and_misshapen_tensors", AccessorsNameMissingAndMisshapenTensors},
      {"what_the_writer_writes_the_reader_reads", WhatTheWriterWritesTheReaderReads},
      {"kernel_weights_are_read_by_their_bundle_names", KernelWeightsAreReadByTheirBundleNames},
      {"kernel_weights_refuse_missing_misshapen_and_unexpected_tensors",
       KernelWeightsRefuseMissingMisshapenAndUnexpectedTensors},
  });
}
