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
  check_int_range(capacity, 0, kInt32Max, op, "capacity");  // rows are int32 indices
  check_int_range(unknown_class, 0, trimap.size(1) - 1, op, "unknown_class", "classes - 1");
}

}  // namespace fastmatte
