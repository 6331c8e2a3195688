// Binds TokenLm.
//
// Tables cross the boundary once, at construction, as an iterable of one
// (keys, logp, backoff) triple per order: C-contiguous int64 keys and float32 logp/backoff of matching
// lengths (backoff empty for the highest order); anything else is a ValueError
// naming the order and the array. Contexts are sequences of ints; scores come
// back as new float32 arrays. The model is immutable, so calls need no lock.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "arrays.h"
#include "token_lm.h"

namespace py = pybind11;

namespace framegate {
namespace {

template <typename T>
std::vector<T> CopyVector(const py::handle& obj, const std::string& what, const char* dtype) {
  const py::array a = bindings::Checked<T>(obj, {-1}, what, dtype);
  const auto* data = static_cast<const T*>(a.data());
  return std::vector<T>(data, data + a.shape(0));
}

// Copies each order as the iterable yields it, so a generator of arrays loaded
// one order at a time never has the whole model in Python and C++ at once.
TokenLm MakeTokenLm(const py::iterable& tables, std::int32_t vocab_size) {
  std::vector<NgramOrder> orders;
  for (const py::handle item : tables) {
    const auto table = item.cast<py::tuple>();
    const std::string what = std::to_string(orders.size() + 1) + "-gram ";
    if (table.size() != 3) throw std::invalid_argument(what + "table must be (keys, logp, backoff)");
    orders.push_back({CopyVector<std::int64_t>(table[0], what + "keys", "int64"),
                      CopyVector<float>(table[1], what + "logp", "float32"),
                      CopyVector<float>(table[2], what + "backoff", "float32")});
  }
  return TokenLm(std::move(orders), vocab_size);
}

// Scores of each context, one row each, (contexts, base) float32.
py::array_t<float> ScoresBatch(const TokenLm& lm, const std::vector<std::vector<std::int32_t>>& contexts) {
  const auto rows = static_cast<py::ssize_t>(contexts.size());
  py::array_t<float> out({rows, static_cast<py::ssize_t>(lm.base())});
  float* data = out.mutable_data();
  {
    py::gil_scoped_release release;
    for (std::size_t i = 0; i < contexts.size(); ++i) {
      lm.Scores(contexts[i].data(), contexts[i].size(), data + i * static_cast<std::size_t>(lm.base()));
    }
  }
  return out;
}

template <typename T>
py::array_t<T> ToArray(const std::vector<T>& values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), out.mutable_data());
  return out;
}

// The tables as given, one (keys, logp, backoff) tuple per order, as new arrays.
py::list Tables(const TokenLm& lm) {
  py::list tables;
  for (const NgramOrder& order : lm.orders()) {
    tables.append(py::make_tuple(ToArray(order.keys), ToArray(order.logp), ToArray(order.backoff)));
  }
  return tables;
}

}  // namespace

void BindTokenLm(py::module_& m) {
  py::class_<TokenLm>(m, "TokenLm",
                      "Back-off n-gram over token pieces: log-probabilities of every id after a context.")
      .def(py::init(&MakeTokenLm), py::arg("tables"), py::arg("vocab_size"))
      .def_property_readonly("vocab_size", &TokenLm::vocab_size)
      .def_property_readonly("order", &TokenLm::order)
      .def_property_readonly("base", &TokenLm::base)
      .def("scores_batch", &ScoresBatch, py::arg("contexts"),
           "(len(contexts), vocab_size + 2) natural-log probabilities: pieces, <s>, </s>")
      .def("tables", &Tables, "one (keys, logp, backoff) tuple of new arrays per order");
}

}  // namespace framegate
