// A user's own op for MindSpore's aot custom-op interface: out = x + s * y
// (s a one-element tensor), and its backward. Built and used by my_model.py;
// docs/feature/custom_ops.md walks through it.
#include <cstdint>
#include <cstring>

static int64_t numel(int nd, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < nd; ++i) n *= shape[i];
  return n;
}

// params: x, y, s (inputs), out (output). Non-zero return = error code.
extern "C" int ScaledAdd(int nparam, void **params, int *ndims, int64_t **shapes,
                         const char **dtypes, void *, void *) {
  if (nparam != 4) return 1;
  for (int i = 0; i < nparam; ++i) if (std::strcmp(dtypes[i], "float32") != 0) return 2;
  const float *x = static_cast<const float *>(params[0]);
  const float *y = static_cast<const float *>(params[1]);
  const float s = *static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[3]);
  const int64_t n = numel(ndims[3], shapes[3]);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] + s * y[i];
  return 0;
}

// params: dout, y, s (inputs), dx, dy, ds (outputs).
extern "C" int ScaledAddGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                             const char **, void *, void *) {
  if (nparam != 6) return 1;
  const float *dout = static_cast<const float *>(params[0]);
  const float *y = static_cast<const float *>(params[1]);
  const float s = *static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  float *dy = static_cast<float *>(params[4]);
  float *ds = static_cast<float *>(params[5]);
  const int64_t n = numel(ndims[0], shapes[0]);
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    dx[i] = dout[i];
    dy[i] = s * dout[i];
    acc += dout[i] * y[i];
  }
  ds[0] = static_cast<float>(acc);
  return 0;
}
