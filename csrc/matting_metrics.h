// Matting metrics (gradient_error, connectivity_error): the input checks shared by their kernels.
#pragma once
#include <limits>

#include "checks.h"

namespace fastmatte {

// pred, gt: [B, H, W] float32 or float64 of one dtype, contiguous; mask: [B, H, W] bool or absent.
inline void check_metric_inputs(const at::Tensor& pred, const at::Tensor& gt,
                                const std::optional<at::Tensor>& mask, const char* op) {
  check_rank(pred, op, "pred", 3, "[B, H, W]");
  TORCH_CHECK(pred.scalar_type() == at::kFloat || pred.scalar_type() == at::kDouble, "fastmatte.",
              op, ": pred must be float32 or float64, got ", pred.scalar_type());
  check_contiguous(pred, op, "pred");
  check_dtype(gt, pred.scalar_type(), op, "gt");
  TORCH_CHECK(gt.sizes() == pred.sizes(), "fastmatte.", op, ": gt must have pred's size ",
              pred.sizes(), ", got ", gt.sizes());
  check_contiguous(gt, op, "gt");
  check_same_device(gt, pred, op, "gt", "pred");
  // Pixel indices (and union-find labels) are 32-bit.
  TORCH_CHECK(pred.numel() <= std::numeric_limits<int32_t>::max(), "fastmatte.", op,
              ": pred must have fewer than 2^31 pixels, got B*H*W = ", pred.numel());
  if (mask.has_value()) {
    check_dtype(*mask, at::kBool, op, "mask");
    TORCH_CHECK(mask->sizes() == pred.sizes(), "fastmatte.", op, ": mask must have pred's size ",
                pred.sizes(), ", got ", mask->sizes());
    check_contiguous(*mask, op, "mask");
    check_same_device(*mask, pred, op, "mask", "pred");
  }
}

}  // namespace fastmatte
