// Array checks at the binding edge, shared by every binding file.
//
// An array crosses into C++ only as a C-contiguous array of exactly the
// expected dtype and shape; anything else is refused with a
// std::invalid_argument (ValueError in Python) that names the argument, the
// expected and the received array. Nothing is converted silently. Values
// (finiteness, ranges) are checked by the C++ core before state changes.
#ifndef FRAMEGATE_CPP_BINDINGS_ARRAYS_H_
#define FRAMEGATE_CPP_BINDINGS_ARRAYS_H_

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace framegate::bindings {

namespace py = pybind11;

// "(2, 3)", "(5,)": a shape as numpy prints it.
inline std::string ShapeText(const std::vector<py::ssize_t>& dims) {
  std::ostringstream os;
  os << "(";
  for (std::size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  os << (dims.size() == 1 ? ",)" : ")");
  return os.str();
}

// What the caller passed: "list", "float64 array of shape (3,)",
// "non-contiguous float32 array of shape (4, 2)".
inline std::string Describe(const py::handle& obj) {
  if (!py::isinstance<py::array>(obj)) {
    return std::string(py::str(py::type::of(obj).attr("__name__")));
  }
  const auto a = py::reinterpret_borrow<py::array>(obj);
  std::vector<py::ssize_t> dims(a.shape(), a.shape() + a.ndim());
  return std::string(a.flags() & py::array::c_style ? "" : "non-contiguous ") +
         std::string(py::str(a.dtype())) + " array of shape " + ShapeText(dims);
}

// `obj` as an array once it is a C-contiguous array of T with shape `dims`
// (a negative dim matches any length, printed as "n"); `what` names the
// argument and `dtype` the element type in the message.
template <typename T>
py::array Checked(const py::handle& obj, const std::vector<py::ssize_t>& dims,
                  const std::string& what, const char* dtype) {
  bool ok = py::isinstance<py::array_t<T>>(obj);
  if (ok) {
    const auto a = py::reinterpret_borrow<py::array>(obj);
    ok = static_cast<std::size_t>(a.ndim()) == dims.size() && (a.flags() & py::array::c_style);
    for (std::size_t i = 0; ok && i < dims.size(); ++i) {
      ok = dims[i] < 0 || a.shape(static_cast<py::ssize_t>(i)) == dims[i];
    }
  }
  if (!ok) {
    std::string want = ShapeText(dims);
    for (std::size_t pos; (pos = want.find("-1")) != std::string::npos;) want.replace(pos, 2, "n");
    throw std::invalid_argument(what + " must be a C-contiguous " + dtype + " array of shape " + want +
                                "; got " + Describe(obj));
  }
  return py::reinterpret_borrow<py::array>(obj);
}

// The float32 case, which is every array but the gated encoder's forced gates.
inline py::array CheckedFloat32(const py::handle& obj, const std::vector<py::ssize_t>& dims,
                                const std::string& what) {
  return Checked<float>(obj, dims, what, "float32");
}

// A copy of a checked float32 array (weights the C++ core keeps), with the
// shape as the weight layouts give it (gated_encoder_layout.h, ...).
inline std::vector<float> CopyFloat32(const py::handle& obj, const std::vector<std::int64_t>& dims,
                                      const std::string& what) {
  const py::array a = CheckedFloat32(obj, std::vector<py::ssize_t>(dims.begin(), dims.end()), what);
  const auto* data = static_cast<const float*>(a.data());
  return std::vector<float>(data, data + a.size());
}

}  // namespace framegate::bindings

#endif  // FRAMEGATE_CPP_BINDINGS_ARRAYS_H_
