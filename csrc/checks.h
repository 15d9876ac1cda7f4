// Input checks shared by every kernel: each failure names the op, the argument and what was
// expected, e.g. "fastmatte.gather_tiles: image must be 4-D [B, C, H, W], got [3, 1080, 1920]".
#pragma once
#include <ATen/ATen.h>

namespace fastmatte {

inline void check_rank(const at::Tensor& t, const char* op, const char* name, int64_t rank,
                       const char* layout) {
  TORCH_CHECK(t.dim() == rank, "fastmatte.", op, ": ", name, " must be ", rank, "-D ", layout,
              ", got ", t.sizes());
}

inline void check_contiguous(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_contiguous(), "fastmatte.", op, ": ", name,
              " must be contiguous (call .contiguous() first)");
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "fastmatte.", op, ": ", name,
              " must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_dtype(const at::Tensor& t, at::ScalarType dtype, const char* op,
                        const char* name) {
  TORCH_CHECK(t.scalar_type() == dtype, "fastmatte.", op, ": ", name, " must be ", dtype,
              ", got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op,
                              const char* name, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), "fastmatte.", op, ": ", name, " is on ", t.device(),
              " but ", ref_name, " is on ", ref.device());
}

// The (tiles, count) pair every tile op takes: tiles [capacity, 3] int32, count [1] int32.
inline void check_selection(const at::Tensor& tiles, const at::Tensor& count,
                            const at::Tensor& ref, const char* op, const char* ref_name) {
  check_rank(tiles, op, "tiles", 2, "[capacity, 3]");
  TORCH_CHECK(tiles.size(1) == 3, "fastmatte.", op, ": tiles must be [capacity, 3] (b, ty, tx), got ",
              tiles.sizes());
  check_dtype(tiles, at::kInt, op, "tiles");
  check_contiguous(tiles, op, "tiles");
  check_same_device(tiles, ref, op, "tiles", ref_name);
  TORCH_CHECK(count.dim() == 1 && count.numel() == 1, "fastmatte.", op,
              ": count must be a 1-element 1-D tensor, got ", count.sizes());
  check_dtype(count, at::kInt, op, "count");
  check_same_device(count, ref, op, "count", ref_name);
}

// On the CPU the selection can be validated for free; on the GPU that would need a host sync.
inline void check_selection_values_cpu(const at::Tensor& tiles, const at::Tensor& count,
                                       int64_t B, int64_t h, int64_t w, const char* op) {
  const int64_t n = count.item<int32_t>();
  TORCH_CHECK(n >= 0 && n <= tiles.size(0), "fastmatte.", op, ": count must be in [0, ",
              tiles.size(0), "] (the capacity), got ", n);
  const int32_t* t = tiles.data_ptr<int32_t>();
  for (int64_t r = 0; r < n; ++r) {
    TORCH_CHECK(t[3 * r] >= 0 && t[3 * r] < B && t[3 * r + 1] >= 0 && t[3 * r + 1] < h &&
                    t[3 * r + 2] >= 0 && t[3 * r + 2] < w,
                "fastmatte.", op, ": tiles row ", r, " = (", t[3 * r], ", ", t[3 * r + 1], ", ",
                t[3 * r + 2], ") is outside the tile grid [B=", B, ", h=", h, ", w=", w, "]");
  }
}

}  // namespace fastmatte
