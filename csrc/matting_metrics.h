// Matting metrics (gradient_error, connectivity_error): what their CPU kernels share: the input
// checks, how a matte sample becomes its value, the counted pixels, and the dtype dispatch.
#pragma once
#include <cstdint>
#include <limits>

#include "checks.h"

namespace fastmatte {

// pred, gt: [B, H, W] uint8 (0..255), float32 or float64 (0..1) of one dtype, contiguous;
// mask: [B, H, W] bool (true: counted) or uint8 trimap (128: counted), or absent (every pixel).
inline void check_metric_inputs(const at::Tensor& pred, const at::Tensor& gt,
                                const std::optional<at::Tensor>& mask, const char* op) {
  check_rank(pred, op, "pred", 3, "[B, H, W]");
  const at::ScalarType type = pred.scalar_type();
  TORCH_CHECK(type == at::kByte || type == at::kFloat || type == at::kDouble, "fastmatte.", op,
              ": pred must be uint8, float32 or float64, got ", type);
  check_contiguous(pred, op, "pred");
  check_dtype(gt, type, op, "gt");
  TORCH_CHECK(gt.sizes() == pred.sizes(), "fastmatte.", op, ": gt must have pred's size ",
              pred.sizes(), ", got ", gt.sizes());
  check_contiguous(gt, op, "gt");
  check_same_device(gt, pred, op, "gt", "pred");
  // Pixel indices (and union-find labels) are 32-bit.
  TORCH_CHECK(pred.numel() <= std::numeric_limits<int32_t>::max(), "fastmatte.", op,
              ": pred must have fewer than 2^31 pixels, got B*H*W = ", pred.numel());
  if (mask.has_value()) {
    TORCH_CHECK(mask->scalar_type() == at::kBool || mask->scalar_type() == at::kByte, "fastmatte.",
                op, ": mask must be bool or a uint8 trimap, got ", mask->scalar_type());
    TORCH_CHECK(mask->sizes() == pred.sizes(), "fastmatte.", op, ": mask must have pred's size ",
                pred.sizes(), ", got ", mask->sizes());
    check_contiguous(*mask, op, "mask");
    check_same_device(*mask, pred, op, "mask", "pred");
  }
}

// A matte sample's value: uint8 v is v / 255 correctly rounded in float (MATLAB's
// single(v) / 255, and what the float path is given); float samples are their own value.
inline float matte_value(uint8_t v) { return static_cast<float>(v) / 255.0f; }
inline float matte_value(float v) { return v; }
inline double matte_value(double v) { return v; }

// The pixels a metric sums over: all (no mask), a bool mask's true ones, or a uint8 trimap's
// unknown ones (== 128, as DIM counts them).
struct CountedPixels {
  const uint8_t* data = nullptr;  // null: every pixel
  bool trimap = false;

  explicit CountedPixels(const std::optional<at::Tensor>& mask)
      : data(mask.has_value() ? static_cast<const uint8_t*>(mask->data_ptr()) : nullptr),
        trimap(mask.has_value() && mask->scalar_type() == at::kByte) {}
  CountedPixels(const uint8_t* data, bool trimap) : data(data), trimap(trimap) {}

  bool operator()(int64_t p) const { return !data || (trimap ? data[p] == 128 : data[p] != 0); }
  // The same pixels of the image starting at pixel `offset`.
  CountedPixels at(int64_t offset) const { return {data ? data + offset : nullptr, trimap}; }
};

// Calls f(In{}, T{}) with In the mattes' storage type and T the working precision: uint8 ->
// float, float32 and float64 -> themselves.
template <typename F>
void dispatch_mattes(at::ScalarType type, F&& f) {
  switch (type) {
    case at::kByte: return f(uint8_t{}, float{});
    case at::kFloat: return f(float{}, float{});
    case at::kDouble: return f(double{}, double{});
    default: TORCH_CHECK(false, "fastmatte: no matting-metric kernel for ", type);
  }
}

}  // namespace fastmatte
