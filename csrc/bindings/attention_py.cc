// numpy-level bindings of the attention kernels, to test the C++ directly
// (tests/python/test_ops_attention.py) without MindSpore.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>

#include "bindings/bindings.h"
#include "kernels/attention.h"

namespace py = pybind11;
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

namespace {

// k, v may hold more positions than q (kv_seq >= q_offset + seq): q's rows are positions
// [q_offset, q_offset + seq) of the key sequence.
mft::kernels::AttentionShape shape_of(const F32 &q, const F32 &k, const F32 &v, bool causal, int64_t q_offset) {
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4)
    throw std::invalid_argument("q, k, v must be 4-D (batch, heads, seq, head_dim)");
  mft::kernels::AttentionShape s{q.shape(0), q.shape(1), k.shape(1), q.shape(2), q.shape(3), causal, k.shape(2),
                                 q_offset};
  for (const F32 *a : {&k, &v})
    if (a->shape(0) != s.batch || a->shape(1) != s.kv_heads || a->shape(2) != s.kv_seq || a->shape(3) != s.dim)
      throw std::invalid_argument("k and v must be (batch, kv_heads, kv_seq, head_dim) matching q and each other");
  return s;
}

mft::kernels::SeqEnds ends_of(const std::optional<I32> &ends, const mft::kernels::AttentionShape &s) {
  mft::kernels::SeqEnds e;
  if (ends) {
    if (ends->ndim() != 2) throw std::invalid_argument("seq_ends must be 2-D (1 or batch, n)");
    e = {ends->data(), ends->shape(0), ends->shape(1)};
    if (e.count == 0) e.ends = nullptr;
  }
  const std::string err = mft::kernels::check_attention_args(s, e);
  if (!err.empty()) throw std::invalid_argument(err);
  return e;
}

py::tuple forward(const F32 &q, const F32 &k, const F32 &v, float scale, const std::optional<I32> &ends,
                  int threads, bool causal, int64_t q_offset) {
  const auto s = shape_of(q, k, v, causal, q_offset);
  const auto e = ends_of(ends, s);
  F32 out({s.batch, s.heads, s.seq, s.dim}), lse({s.batch, s.heads, s.seq});
  {
    py::gil_scoped_release release;
    mft::kernels::attention_forward(q.data(), k.data(), v.data(), out.mutable_data(), lse.mutable_data(), s,
                                    scale, e, threads);
  }
  return py::make_tuple(out, lse);
}

py::tuple backward(const F32 &dout, const F32 &q, const F32 &k, const F32 &v, const F32 &out, const F32 &lse,
                   float scale, const std::optional<I32> &ends, int threads, bool causal, int64_t q_offset) {
  const auto s = shape_of(q, k, v, causal, q_offset);
  const auto e = ends_of(ends, s);
  if (dout.size() != q.size() || out.size() != q.size() || lse.size() != s.batch * s.heads * s.seq)
    throw std::invalid_argument("dout/out must match q; lse must be (batch, heads, seq)");
  F32 dq({s.batch, s.heads, s.seq, s.dim}), dk({s.batch, s.kv_heads, s.kv_seq, s.dim}),
      dv({s.batch, s.kv_heads, s.kv_seq, s.dim});
  {
    py::gil_scoped_release release;
    mft::kernels::attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(),
                                     dq.mutable_data(), dk.mutable_data(), dv.mutable_data(), s, scale, e,
                                     threads);
  }
  return py::make_tuple(dq, dk, dv);
}

}  // namespace

void mft_bind_attention(py::module_ &m) {
  m.def("attention_forward", &forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("scale"),
        py::arg("seq_ends") = py::none(), py::arg("threads") = 0, py::arg("causal") = true,
        py::arg("q_offset") = 0,
        "Flash attention, fp32 q (B,H,S,D), k/v (B,KVH,L,D), causal or (causal=False) bidirectional within "
        "documents; q's rows are positions [q_offset, q_offset + S) of the L keys. Returns (out, lse). "
        "threads <= 0: attention_threads().");
  m.def("attention_backward", &backward, py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("out"), py::arg("lse"), py::arg("scale"), py::arg("seq_ends") = py::none(),
        py::arg("threads") = 0, py::arg("causal") = true, py::arg("q_offset") = 0, "Returns (dq, dk, dv).");
  m.def("attention_threads", &mft::kernels::attention_threads);
}
