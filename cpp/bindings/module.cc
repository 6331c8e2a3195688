// framegate.kernels._native: the binding layer over the C++ kernels.
//
// The boundary is an error firewall: every C++ exception becomes a Python
// exception (std::invalid_argument -> ValueError, std::bad_alloc ->
// MemoryError, anything else -> RuntimeError), and every native call
// releases the GIL around the C++ work.
#include <exception>
#include <new>
#include <stdexcept>

#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace framegate {
// One binding file per bound concept.
void BindFeatureWindow(py::module_& m);
void BindGlobalCnnState(py::module_& m);
void BindGatedEncoder(py::module_& m);
void BindTokenLm(py::module_& m);
}  // namespace framegate

namespace {

void TranslateNativeException(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const py::builtin_exception&) {
    throw;  // pybind11's own, already mapped to a Python type
  } catch (const std::invalid_argument& e) {
    py::set_error(PyExc_ValueError, e.what());
  } catch (const std::bad_alloc&) {
    py::set_error(PyExc_MemoryError, "framegate native code ran out of memory");
  } catch (const std::exception& e) {
    py::set_error(PyExc_RuntimeError, e.what());
  } catch (...) {
    py::set_error(PyExc_RuntimeError, "framegate native code raised an unknown error");
  }
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "framegate's C++ kernels; use them through framegate.kernels.";
  py::register_local_exception_translator(TranslateNativeException);
  framegate::BindFeatureWindow(m);
  framegate::BindGlobalCnnState(m);
  framegate::BindGatedEncoder(m);
  framegate::BindTokenLm(m);
}
