// select_tiles: the input checks shared by the CPU and CUDA kernels.
#pragma once
#include "checks.h"

namespace fastmatte {

inline void check_select_tiles_inputs(const at::Tensor& trimap, int64_t capacity,
                                      int64_t unknown_class) {
  const char* op = "select_tiles";
  check_rank(trimap, op, "trimap", 4, "[B, classes, h, w]");
  check_floating(trimap, op, "trimap");
  check_contiguous(trimap, op, "trimap");
  TORCH_CHECK(capacity >= 0, "fastmatte.select_tiles: capacity must be >= 0, got ", capacity);
  const int64_t classes = trimap.size(1);
  TORCH_CHECK(unknown_class >= 0 && unknown_class < classes,
              "fastmatte.select_tiles: unknown_class must be in [0, ", classes,
              ") for a trimap with ", classes, " classes, got ", unknown_class);
}

}  // namespace fastmatte
