#include <pybind11/pybind11.h>

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "mft C++ kernels (pybind11 bindings for tests; aot entry points for MindSpore)";
}
