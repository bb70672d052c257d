// numpy-level bindings of the RMSNorm kernels, for testing the C++ directly
// from Python (tests/python/test_ops_rms_norm.py) without MindSpore.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "bindings/bindings.h"
#include "kernels/rms_norm.h"

namespace py = pybind11;
using mft::kernels::Half;

namespace {

bool is_f16(const py::array &a) { return a.dtype().is(py::dtype("float16")); }
bool is_f32(const py::array &a) { return a.dtype().is(py::dtype("float32")); }

py::array contiguous_float(const py::array &a, const char *name) {
  if (!is_f16(a) && !is_f32(a)) {
    throw std::invalid_argument(std::string(name) + " must be float32 or float16, got " +
                                std::string(py::str(a.dtype())));
  }
  return py::array::ensure(a, py::array::c_style);
}

struct Dims {
  int64_t rows, hidden;
};

Dims check_shapes(const py::array &x, const py::array &w) {
  if (x.ndim() < 1) throw std::invalid_argument("x must have at least one dimension");
  if (w.ndim() != 1) throw std::invalid_argument("weight must be 1-D");
  const int64_t hidden = x.shape(x.ndim() - 1);
  if (w.shape(0) != hidden) {
    throw std::invalid_argument("weight has " + std::to_string(w.shape(0)) +
                                " elements but x's last dimension is " + std::to_string(hidden));
  }
  return {hidden == 0 ? 0 : static_cast<int64_t>(x.size()) / hidden, hidden};
}

template <typename X, typename W>
py::array forward_typed(const py::array &x, const py::array &w, float eps, Dims d) {
  py::array y(x.dtype(), std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const X *xp = static_cast<const X *>(x.data());
  const W *wp = static_cast<const W *>(w.data());
  X *yp = static_cast<X *>(y.mutable_data());
  {
    py::gil_scoped_release release;
    mft::kernels::rms_norm_forward<X, W>(xp, wp, yp, d.rows, d.hidden, eps);
  }
  return y;
}

template <typename X, typename W>
py::tuple backward_typed(const py::array &dy, const py::array &x, const py::array &w, float eps,
                         Dims d) {
  py::array dx(x.dtype(), std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  py::array dw(w.dtype(), std::vector<py::ssize_t>{w.shape(0)});
  const X *dyp = static_cast<const X *>(dy.data());
  const X *xp = static_cast<const X *>(x.data());
  const W *wp = static_cast<const W *>(w.data());
  X *dxp = static_cast<X *>(dx.mutable_data());
  W *dwp = static_cast<W *>(dw.mutable_data());
  {
    py::gil_scoped_release release;
    mft::kernels::rms_norm_backward<X, W>(dyp, xp, wp, dxp, dwp, d.rows, d.hidden, eps);
  }
  return py::make_tuple(dx, dw);
}

py::array forward(const py::array &x_in, const py::array &w_in, float eps) {
  const py::array x = contiguous_float(x_in, "x");
  const py::array w = contiguous_float(w_in, "weight");
  const Dims d = check_shapes(x, w);
  if (is_f32(x)) return is_f32(w) ? forward_typed<float, float>(x, w, eps, d)
                                  : forward_typed<float, Half>(x, w, eps, d);
  return is_f32(w) ? forward_typed<Half, float>(x, w, eps, d) : forward_typed<Half, Half>(x, w, eps, d);
}

py::tuple backward(const py::array &dy_in, const py::array &x_in, const py::array &w_in, float eps) {
  const py::array dy = contiguous_float(dy_in, "dy");
  const py::array x = contiguous_float(x_in, "x");
  const py::array w = contiguous_float(w_in, "weight");
  const Dims d = check_shapes(x, w);
  if (!dy.dtype().is(x.dtype()) || dy.ndim() != x.ndim() ||
      !std::equal(x.shape(), x.shape() + x.ndim(), dy.shape())) {
    throw std::invalid_argument("dy must have the same shape and dtype as x");
  }
  if (is_f32(x)) return is_f32(w) ? backward_typed<float, float>(dy, x, w, eps, d)
                                  : backward_typed<float, Half>(dy, x, w, eps, d);
  return is_f32(w) ? backward_typed<Half, float>(dy, x, w, eps, d)
                   : backward_typed<Half, Half>(dy, x, w, eps, d);
}

}  // namespace

void mft_bind_rms_norm(py::module_ &m) {
  m.def("rms_norm_forward", &forward, py::arg("x"), py::arg("weight"), py::arg("eps"),
        "y = x * rsqrt(mean(x^2, -1) + eps) * weight; float32/float16 arrays, fp32 accumulation.");
  m.def("rms_norm_backward", &backward, py::arg("dy"), py::arg("x"), py::arg("weight"),
        py::arg("eps"), "Returns (dx, dweight); dweight is summed over all rows.");
}
