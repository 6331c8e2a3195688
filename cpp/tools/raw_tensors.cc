#include "raw_tensors.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <utility>

namespace framegate::tools {
namespace {

// Any single dimension above this is refused (it could only describe a
// tensor far beyond any file, or an empty one with an absurd shape).
constexpr std::uint64_t kMaxDim = std::uint64_t{1} << 40;

// Reads little-endian fields from a byte image, refusing to step past its end.
class Cursor {
 public:
  Cursor(const std::vector<std::uint8_t>& bytes, const std::string& source)
      : bytes_(bytes), source_(source) {}

  std::size_t offset() const { return offset_; }
  std::size_t left() const { return bytes_.size() - offset_; }

  [[noreturn]] void Fail(const std::string& what) const {
    throw RawTensorError(source_ + ": " + what + " (at byte " +
                         std::to_string(offset_) + " of " +
                         std::to_string(bytes_.size()) + ")");
  }

  const std::uint8_t* Take(std::size_t n, const std::string& what) {
    if (n > left()) {
      Fail("truncated: " + what + " needs " + std::to_string(n) +
           " bytes, " + std::to_string(left()) + " left");
    }
    const std::uint8_t* p = bytes_.data() + offset_;
    offset_ += n;
    return p;
  }

  std::uint32_t U32(const std::string& what) {
    const std::uint8_t* p = Take(4, what);
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }

  std::uint64_t U64(const std::string& what) {
    const std::uint8_t* p = Take(8, what);
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }

 private:
  const std::vector<std::uint8_t>& bytes_;
  const std::string& source_;
  std::size_t offset_ = 0;
};

std::uint64_t LoadLE(const std::uint8_t* p, std::size_t size) {
  std::uint64_t v = 0;
  for (std::size_t i = size; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

// 4- and 8-byte values (float32, float64, int64) from their little-endian
// bytes, whatever the host's byte order.
template <typename T>
std::vector<T> DecodeValues(const std::uint8_t* p, std::size_t count) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "4- or 8-byte values");
  std::vector<T> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t raw = LoadLE(p + i * sizeof(T), sizeof(T));
    if constexpr (sizeof(T) == 4) {
      const auto bits = static_cast<std::uint32_t>(raw);
      std::memcpy(&out[i], &bits, sizeof(T));
    } else {
      std::memcpy(&out[i], &raw, sizeof(T));
    }
  }
  return out;
}

void PutLE(std::vector<std::uint8_t>* out, std::uint64_t v, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) {
    out->push_back(static_cast<std::uint8_t>(v & 0xffu));
    v >>= 8;
  }
}

template <typename T>
void EncodeValues(std::vector<std::uint8_t>* out, const std::vector<T>& values) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "4- or 8-byte values");
  for (const T& value : values) {
    std::uint64_t raw = 0;
    if constexpr (sizeof(T) == 4) {
      std::uint32_t bits = 0;
      std::memcpy(&bits, &value, sizeof(T));
      raw = bits;
    } else {
      std::memcpy(&raw, &value, sizeof(T));
    }
    PutLE(out, raw, sizeof(T));
  }
}

bool KnownDType(std::uint32_t code) { return code >= 1 && code <= 4; }

// The element count of a shape whose dimensions are in [0, kMaxDim]; false
// when it does not fit 64 bits. A zero dimension makes the tensor empty
// whatever the others are, so (2^40, 2^40, 0) has 0 elements.
bool CountElements(const std::vector<std::int64_t>& dims, std::uint64_t* count) {
  std::uint64_t n = 1;
  bool overflow = false;
  for (std::int64_t d : dims) {
    const auto dim = static_cast<std::uint64_t>(d);
    if (dim == 0) {
      *count = 0;
      return true;
    }
    if (n > std::numeric_limits<std::uint64_t>::max() / dim) {
      overflow = true;
    } else {
      n *= dim;
    }
  }
  *count = n;
  return !overflow;
}

std::size_t StoredCount(const RawTensor& t) {
  switch (t.dtype) {
    case DType::kFloat32:
      return t.f32.size();
    case DType::kFloat64:
      return t.f64.size();
    case DType::kInt64:
      return t.i64.size();
    case DType::kUint8:
      return t.u8.size();
  }
  return 0;
}

RawTensor Make(DType dtype, std::vector<std::int64_t> dims) {
  RawTensor t;
  t.dtype = dtype;
  t.dims = std::move(dims);
  return t;
}

}  // namespace

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt64:
      return "int64";
    case DType::kUint8:
      return "uint8";
  }
  return "?";
}

std::size_t ItemSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kUint8:
      return 1;
  }
  return 0;
}

std::size_t RawTensor::NumElements() const {
  std::size_t n = 1;
  for (std::int64_t d : dims) n *= static_cast<std::size_t>(d);
  return n;
}

std::string RawTensor::ShapeString() const {
  std::ostringstream os;
  os << "(";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    os << (i ? ", " : "") << dims[i];
  }
  os << (dims.size() == 1 ? ",)" : ")");
  return os.str();
}

RawTensor RawTensor::Float32(std::vector<std::int64_t> dims,
                             std::vector<float> values) {
  RawTensor t = Make(DType::kFloat32, std::move(dims));
  t.f32 = std::move(values);
  return t;
}

RawTensor RawTensor::Float64(std::vector<std::int64_t> dims,
                             std::vector<double> values) {
  RawTensor t = Make(DType::kFloat64, std::move(dims));
  t.f64 = std::move(values);
  return t;
}

RawTensor RawTensor::Int64(std::vector<std::int64_t> dims,
                           std::vector<std::int64_t> values) {
  RawTensor t = Make(DType::kInt64, std::move(dims));
  t.i64 = std::move(values);
  return t;
}

RawTensor RawTensor::Uint8(std::vector<std::int64_t> dims,
                           std::vector<std::uint8_t> values) {
  RawTensor t = Make(DType::kUint8, std::move(dims));
  t.u8 = std::move(values);
  return t;
}

RawTensorFile::RawTensorFile(std::string source,
                             std::map<std::string, RawTensor> tensors)
    : source_(std::move(source)), tensors_(std::move(tensors)) {}

bool RawTensorFile::Has(const std::string& name) const {
  return tensors_.count(name) != 0;
}

const RawTensor& RawTensorFile::Get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw RawTensorError(source_ + ": no tensor '" + name + "'");
  }
  return it->second;
}

const RawTensor& RawTensorFile::Typed(const std::string& name,
                                      DType dtype) const {
  const RawTensor& t = Get(name);
  if (t.dtype != dtype) {
    throw RawTensorError(source_ + ": tensor '" + name + "' is " +
                         DTypeName(t.dtype) + ", expected " +
                         DTypeName(dtype));
  }
  return t;
}

std::vector<float> RawTensorFile::Float32(
    const std::string& name, const std::vector<std::int64_t>& dims) const {
  const RawTensor& t = Typed(name, DType::kFloat32);
  if (t.dims != dims) {
    throw RawTensorError(source_ + ": tensor '" + name + "' has shape " +
                         t.ShapeString() + ", expected " +
                         Make(t.dtype, dims).ShapeString());
  }
  return t.f32;
}

const RawTensor& RawTensorFile::Matrix(const std::string& name,
                                       std::int64_t cols) const {
  const RawTensor& t = Typed(name, DType::kFloat32);
  if (t.dims.size() != 2 || t.dims[1] != cols) {
    throw RawTensorError(source_ + ": tensor '" + name + "' has shape " +
                         t.ShapeString() + ", expected (frames, " +
                         std::to_string(cols) + ")");
  }
  return t;
}

std::int64_t RawTensorFile::Int64Scalar(const std::string& name) const {
  const RawTensor& t = Typed(name, DType::kInt64);
  if (!t.dims.empty()) {
    throw RawTensorError(source_ + ": tensor '" + name + "' has shape " +
                         t.ShapeString() + ", expected a scalar ()");
  }
  return t.i64[0];
}

double RawTensorFile::Float64Scalar(const std::string& name) const {
  const RawTensor& t = Typed(name, DType::kFloat64);
  if (!t.dims.empty()) {
    throw RawTensorError(source_ + ": tensor '" + name + "' has shape " +
                         t.ShapeString() + ", expected a scalar ()");
  }
  return t.f64[0];
}

float RawTensorFile::Float32Scalar(const std::string& name) const {
  return Float32(name, {})[0];
}

RawTensorFile ParseRawTensors(const std::vector<std::uint8_t>& bytes,
                              const std::string& source) {
  Cursor in(bytes, source);
  const std::uint8_t* magic = in.Take(sizeof(kRawTensorMagic), "magic");
  if (std::memcmp(magic, kRawTensorMagic, sizeof(kRawTensorMagic)) != 0) {
    throw RawTensorError(source +
                         ": not a framegate raw tensor file (magic is not "
                         "FGTENSOR)");
  }
  const std::uint32_t version = in.U32("version");
  if (version != kRawTensorVersion) {
    throw RawTensorError(source + ": format version " +
                         std::to_string(version) + ", this reader knows " +
                         std::to_string(kRawTensorVersion));
  }
  const std::uint32_t count = in.U32("tensor count");
  if (count > kMaxTensors) {
    in.Fail("tensor count " + std::to_string(count) + " exceeds " +
            std::to_string(kMaxTensors));
  }
  std::map<std::string, RawTensor> tensors;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::string index = "tensor #" + std::to_string(i);
    const std::uint32_t name_bytes = in.U32(index + " name length");
    if (name_bytes == 0 || name_bytes > kMaxNameBytes) {
      in.Fail(index + ": name length " + std::to_string(name_bytes) +
              " outside [1, " + std::to_string(kMaxNameBytes) + "]");
    }
    const std::uint8_t* name_data = in.Take(name_bytes, index + " name");
    const std::string name(name_data, name_data + name_bytes);
    const std::string what = "tensor '" + name + "'";
    if (tensors.count(name)) in.Fail(what + " appears twice");
    const std::uint32_t code = in.U32(what + " dtype");
    if (!KnownDType(code)) {
      in.Fail(what + ": unknown dtype code " + std::to_string(code));
    }
    const auto dtype = static_cast<DType>(code);
    const std::uint32_t ndim = in.U32(what + " ndim");
    if (ndim > kMaxDims) {
      in.Fail(what + ": " + std::to_string(ndim) + " dimensions, at most " +
              std::to_string(kMaxDims));
    }
    RawTensor t = Make(dtype, {});
    for (std::uint32_t k = 0; k < ndim; ++k) {
      const std::uint64_t dim = in.U64(what + " dimension");
      if (dim > kMaxDim) {
        in.Fail(what + ": dimension " + std::to_string(k) + " is " +
                std::to_string(dim));
      }
      t.dims.push_back(static_cast<std::int64_t>(dim));
    }
    std::uint64_t elements = 0;
    const bool fits = CountElements(t.dims, &elements);
    const std::uint64_t item = ItemSize(dtype);
    if (!fits || elements > in.left() / item) {
      in.Fail("truncated: " + what + " of shape " + t.ShapeString() + " " +
              DTypeName(dtype) + " needs more bytes than the " +
              std::to_string(in.left()) + " left");
    }
    const auto n = static_cast<std::size_t>(elements);
    const std::uint8_t* data = in.Take(n * item, what + " data");
    switch (dtype) {
      case DType::kFloat32:
        t.f32 = DecodeValues<float>(data, n);
        break;
      case DType::kFloat64:
        t.f64 = DecodeValues<double>(data, n);
        break;
      case DType::kInt64:
        t.i64 = DecodeValues<std::int64_t>(data, n);
        break;
      case DType::kUint8:
        t.u8.assign(data, data + n);
        break;
    }
    tensors.emplace(name, std::move(t));
  }
  if (in.left() != 0) {
    in.Fail(std::to_string(in.left()) + " trailing bytes after the last of " +
            std::to_string(count) + " tensors");
  }
  return RawTensorFile(source, std::move(tensors));
}

RawTensorFile ReadRawTensors(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw RawTensorError(path + ": cannot open for reading");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                                  std::istreambuf_iterator<char>());
  if (file.bad()) throw RawTensorError(path + ": read error");
  return ParseRawTensors(bytes, path);
}

std::vector<std::uint8_t> SerializeRawTensors(
    const std::map<std::string, RawTensor>& tensors) {
  if (tensors.size() > kMaxTensors) {
    throw RawTensorError("too many tensors to write: " +
                         std::to_string(tensors.size()));
  }
  std::vector<std::uint8_t> out(std::begin(kRawTensorMagic),
                                std::end(kRawTensorMagic));
  PutLE(&out, kRawTensorVersion, 4);
  PutLE(&out, tensors.size(), 4);
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name.size() > kMaxNameBytes) {
      throw RawTensorError("tensor name '" + name + "' must have 1 to " +
                           std::to_string(kMaxNameBytes) + " bytes");
    }
    if (t.dims.size() > kMaxDims) {
      throw RawTensorError("tensor '" + name + "': more than " +
                           std::to_string(kMaxDims) + " dimensions");
    }
    for (std::int64_t d : t.dims) {
      if (d < 0) throw RawTensorError("tensor '" + name + "': negative dim");
      if (static_cast<std::uint64_t>(d) > kMaxDim) {
        throw RawTensorError("tensor '" + name + "': dimension " +
                             std::to_string(d) + " exceeds " +
                             std::to_string(kMaxDim));
      }
    }
    std::uint64_t elements = 0;
    if (!CountElements(t.dims, &elements)) {
      throw RawTensorError("tensor '" + name + "': shape " + t.ShapeString() +
                           " has more than 2^64 elements");
    }
    if (StoredCount(t) != elements) {
      throw RawTensorError("tensor '" + name + "': " +
                           std::to_string(StoredCount(t)) +
                           " values for shape " + t.ShapeString());
    }
    PutLE(&out, name.size(), 4);
    out.insert(out.end(), name.begin(), name.end());
    PutLE(&out, static_cast<std::uint32_t>(t.dtype), 4);
    PutLE(&out, t.dims.size(), 4);
    for (std::int64_t d : t.dims) PutLE(&out, static_cast<std::uint64_t>(d), 8);
    switch (t.dtype) {
      case DType::kFloat32:
        EncodeValues(&out, t.f32);
        break;
      case DType::kFloat64:
        EncodeValues(&out, t.f64);
        break;
      case DType::kInt64:
        EncodeValues(&out, t.i64);
        break;
      case DType::kUint8:
        out.insert(out.end(), t.u8.begin(), t.u8.end());
        break;
    }
  }
  return out;
}

void WriteRawTensors(const std::string& path,
                     const std::map<std::string, RawTensor>& tensors) {
  const std::vector<std::uint8_t> bytes = SerializeRawTensors(tensors);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) throw RawTensorError(path + ": cannot open for writing");
  file.write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  if (!file) throw RawTensorError(path + ": write error");
}

}  // namespace framegate::tools
