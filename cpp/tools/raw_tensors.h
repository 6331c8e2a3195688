// Raw tensor files: how weights, recorded inputs and outputs reach the
// Python-free driver (framegate_driver.cc). kernels/raw_tensors.py writes and
// reads the same format; the bundle's ONNX initializers stay the source of
// truth, this is only their transport to a board without Python or protobuf.
//
// Format, version 1. All integers little-endian, no padding:
//   magic    8 bytes  "FGTENSOR"
//   version  u32      1
//   count    u32      number of tensors that follow (<= kMaxTensors)
//   count records, each:
//     name_bytes u32      1 .. kMaxNameBytes
//     name       name_bytes bytes of UTF-8, unique within the file
//     dtype      u32      1 float32, 2 float64, 3 int64, 4 uint8
//     ndim       u32      0 .. kMaxDims (0: a scalar, one element)
//     dims       ndim x u64
//     data       prod(dims) x itemsize bytes, row-major, little-endian
// The file ends right after the last record; trailing bytes are an error.
//
// Reading checks every field against the bytes actually left before it
// allocates anything, so a truncated or hostile file is refused with a
// RawTensorError naming the file, the tensor and the offset, never read out
// of bounds.
#ifndef FRAMEGATE_CPP_TOOLS_RAW_TENSORS_H_
#define FRAMEGATE_CPP_TOOLS_RAW_TENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace framegate::tools {

inline constexpr char kRawTensorMagic[8] = {'F', 'G', 'T', 'E',
                                            'N', 'S', 'O', 'R'};
inline constexpr std::uint32_t kRawTensorVersion = 1;
inline constexpr std::uint32_t kMaxTensors = 1u << 20;
inline constexpr std::uint32_t kMaxNameBytes = 1024;
inline constexpr std::uint32_t kMaxDims = 8;

enum class DType : std::uint32_t {
  kFloat32 = 1,
  kFloat64 = 2,
  kInt64 = 3,
  kUint8 = 4
};

const char* DTypeName(DType dtype);
std::size_t ItemSize(DType dtype);

class RawTensorError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One tensor; exactly one of the value vectors is used, as `dtype` says.
struct RawTensor {
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> dims;
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<std::int64_t> i64;
  std::vector<std::uint8_t> u8;

  std::size_t NumElements() const;
  std::string ShapeString() const;

  static RawTensor Float32(std::vector<std::int64_t> dims,
                           std::vector<float> values);
  static RawTensor Float64(std::vector<std::int64_t> dims,
                           std::vector<double> values);
  static RawTensor Int64(std::vector<std::int64_t> dims,
                         std::vector<std::int64_t> values);
  static RawTensor Uint8(std::vector<std::int64_t> dims,
                         std::vector<std::uint8_t> values);
};

// A file's tensors by name, with typed, shape-checked access. Every accessor
// throws RawTensorError naming the file and tensor when it is missing or of
// another dtype or shape.
class RawTensorFile {
 public:
  RawTensorFile() = default;
  RawTensorFile(std::string source, std::map<std::string, RawTensor> tensors);

  bool Has(const std::string& name) const;
  const RawTensor& Get(const std::string& name) const;
  // The float32 values of `name`, whose shape must equal `dims`.
  std::vector<float> Float32(const std::string& name,
                             const std::vector<std::int64_t>& dims) const;
  // A float32 tensor of shape (any, cols); rows is its first dimension.
  const RawTensor& Matrix(const std::string& name, std::int64_t cols) const;
  // Scalars (shape ()).
  std::int64_t Int64Scalar(const std::string& name) const;
  double Float64Scalar(const std::string& name) const;
  float Float32Scalar(const std::string& name) const;

  const std::map<std::string, RawTensor>& tensors() const { return tensors_; }
  const std::string& source() const { return source_; }

 private:
  const RawTensor& Typed(const std::string& name, DType dtype) const;

  std::string source_;
  std::map<std::string, RawTensor> tensors_;
};

// Parses a whole file image; `source` names it in errors.
RawTensorFile ParseRawTensors(const std::vector<std::uint8_t>& bytes,
                              const std::string& source);
RawTensorFile ReadRawTensors(const std::string& path);

// Serializes `tensors` (names in map order). Throws RawTensorError if a
// tensor's values disagree with its dims or dtype, a dimension is one the
// reader refuses, or a name is invalid: what it writes, ParseRawTensors reads.
std::vector<std::uint8_t> SerializeRawTensors(
    const std::map<std::string, RawTensor>& tensors);
void WriteRawTensors(const std::string& path,
                     const std::map<std::string, RawTensor>& tensors);

}  // namespace framegate::tools

#endif  // FRAMEGATE_CPP_TOOLS_RAW_TENSORS_H_
