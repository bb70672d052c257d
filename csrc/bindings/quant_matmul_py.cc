// numpy-level bindings of the quantized matmul kernels, for parity tests and
// benches (tests/python/test_quant_kernels.py, benches/quant.py) without MindSpore.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bindings/bindings.h"
#include "kernels/quant_matmul.h"
#include "kernels/quant_matmul_w8a8.h"

namespace py = pybind11;

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

void check_x(const F32 &x, int64_t k) {
  if (x.ndim() != 2 || x.shape(1) != k) {
    throw std::invalid_argument("x must be (M, " + std::to_string(k) + ") float32");
  }
}

py::array_t<float> int8_mm(const F32 &x, const py::array_t<int8_t, py::array::c_style> &w, const F32 &scale) {
  if (w.ndim() != 2) throw std::invalid_argument("w must be (N, K) int8");
  const int64_t n = w.shape(0), k = w.shape(1);
  check_x(x, k);
  if (scale.ndim() != 1 || scale.shape(0) != n) throw std::invalid_argument("scale must be (N,) float32");
  const int64_t m = x.shape(0);
  py::array_t<float> y({m, n});
  {
    py::gil_scoped_release release;
    mft::kernels::quant_matmul_int8(x.data(), w.data(), scale.data(), y.mutable_data(), m, n, k);
  }
  return y;
}

py::array_t<float> int4_mm(const F32 &x, const py::array_t<uint8_t, py::array::c_style> &w, const F32 &scales,
                           const F32 &zeros) {
  if (w.ndim() != 2) throw std::invalid_argument("w must be (N, K/2) uint8");
  const int64_t n = w.shape(0), k = w.shape(1) * 2;
  check_x(x, k);
  if (scales.ndim() != 2 || scales.shape(0) != n || zeros.ndim() != 2 || zeros.shape(0) != n ||
      zeros.shape(1) != scales.shape(1) || scales.shape(1) < 1) {
    throw std::invalid_argument("scales and zeros must both be (N, G) float32");
  }
  const int64_t groups = scales.shape(1);
  if (k % groups != 0 || (k / groups) % 16 != 0) {
    throw std::invalid_argument("group size K/G must be a whole multiple of 16");
  }
  const int64_t m = x.shape(0);
  py::array_t<float> y({m, n});
  {
    py::gil_scoped_release release;
    mft::kernels::quant_matmul_int4(x.data(), w.data(), scales.data(), zeros.data(), y.mutable_data(), m, n, k,
                                    k / groups);
  }
  return y;
}

using I8 = py::array_t<int8_t, py::array::c_style>;

py::tuple quantize_rows(const F32 &x) {
  if (x.ndim() != 2) throw std::invalid_argument("x must be (M, K) float32");
  const int64_t m = x.shape(0), k = x.shape(1);
  py::array_t<int8_t> q({m, k});
  py::array_t<float> scale({m});
  {
    py::gil_scoped_release release;
    mft::kernels::quantize_rows_int8(x.data(), q.mutable_data(), scale.mutable_data(), m, k);
  }
  return py::make_tuple(q, scale);
}

py::array_t<int32_t> gemm_nt(const I8 &a, const I8 &w) {
  if (a.ndim() != 2 || w.ndim() != 2 || a.shape(1) != w.shape(1)) {
    throw std::invalid_argument("a must be (M, K) and w (N, K), both int8");
  }
  const int64_t m = a.shape(0), n = w.shape(0), k = w.shape(1);
  py::array_t<int32_t> c({m, n});
  {
    py::gil_scoped_release release;
    mft::kernels::int8_gemm_nt(a.data(), w.data(), c.mutable_data(), m, n, k);
  }
  return c;
}

py::array_t<float> w8a8_mm(const F32 &x, const I8 &w, const F32 &scale) {
  if (w.ndim() != 2) throw std::invalid_argument("w must be (N, K) int8");
  const int64_t n = w.shape(0), k = w.shape(1);
  check_x(x, k);
  if (scale.ndim() != 1 || scale.shape(0) != n) throw std::invalid_argument("scale must be (N,) float32");
  const int64_t m = x.shape(0);
  py::array_t<float> y({m, n});
  {
    py::gil_scoped_release release;
    mft::kernels::w8a8_matmul(x.data(), w.data(), scale.data(), y.mutable_data(), m, n, k);
  }
  return y;
}

}  // namespace

void mft_bind_quant_matmul(py::module_ &m) {
  m.def("quant_matmul_int8", &int8_mm, py::arg("x"), py::arg("w"), py::arg("scale"),
        "y = x @ (w * scale[:, None]).T; x (M, K) float32, w (N, K) int8, scale (N,) float32.");
  m.def("quant_matmul_int4", &int4_mm, py::arg("x"), py::arg("w"), py::arg("scales"), py::arg("zeros"),
        "y = x @ dequant(w).T; w (N, K/2) uint8 in 16-column runs, scales/zeros (N, G) float32.");
  m.def("quant_matmul_isa", &mft::kernels::quant_matmul_isa, "the instruction-set path taken: avx2 or scalar");
  m.def("quantize_rows_int8", &quantize_rows, py::arg("x"),
        "per-token int8: (q (M, K) int8, scale (M,)), scale = max|x| / 127, q = round(x / scale)");
  m.def("int8_gemm_nt", &gemm_nt, py::arg("a"), py::arg("w"), "c (M, N) int32 = a (M, K) int8 @ w (N, K).T int8");
  m.def("w8a8_matmul", &w8a8_mm, py::arg("x"), py::arg("w"), py::arg("scale"),
        "W8A8: per-token int8 x times int8 w (N, K), int32 accumulate, * x scale * scale[n]");
  m.def("w8a8_isa", &mft::kernels::w8a8_isa, "the int8 GEMM path taken: avx512vnni, avx2 or scalar");
}
