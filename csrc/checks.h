// Input checks shared by every kernel: each failure names the op, the argument and what was
// expected, e.g. "fastmatte.gather_tiles: image must be 4-D [B, C, H, W], got [3, 1080, 1920]".
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>

namespace fastmatte {

// The limits of fastmatte/ops/_checks.py (its docstring says why), enforced again here because
// torch.ops.fastmatte.* reaches the kernels without the Python checks.
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
// Bias tables of (2r-1)^2 (+1) rows for a window or search range r are indexed in int32.
constexpr int64_t kMaxTableRange = 23170;
constexpr double kMaxOutputBytes = 1099511627776.0;  // 2^40 bytes (1 TiB) per tensor an op makes

// The upper end of an int range as the errors say it; `bound` names it when other arguments
// make it ("max(H, W) = 1920").
inline std::string int_limit(int64_t maximum, const char* bound) {
  if (bound != nullptr) return std::string(bound) + " = " + std::to_string(maximum);
  return maximum == kInt32Max ? "2**31 - 1" : std::to_string(maximum);
}

inline void check_int_range(int64_t value, int64_t minimum, int64_t maximum, const char* op,
                            const char* name, const char* bound = nullptr) {
  TORCH_CHECK(value >= minimum && value <= maximum, "fastmatte.", op, ": ", name,
              " must be an int in [", minimum, ", ", int_limit(maximum, bound), "], got ", value);
}

// Refuses a tensor of `sizes` and `dtype` of more than kMaxOutputBytes before it is allocated.
// The product is taken in double: exact up to 2^53, so the comparison is too, and it cannot
// overflow for sizes that fit int64.
inline void check_output_size(at::IntArrayRef sizes, at::ScalarType dtype, const char* op,
                              const char* name) {
  double bytes = static_cast<double>(c10::elementSize(dtype));
  for (const int64_t s : sizes) bytes *= static_cast<double>(s);
  if (bytes <= kMaxOutputBytes) return;
  std::ostringstream gib;
  gib << std::fixed << std::setprecision(1) << bytes / (1 << 30);
  TORCH_CHECK(false, "fastmatte.", op, ": ", name, " would be ", sizes, " ", dtype, " = ", gib.str(),
              " GiB, more than the 1024 GiB (2**40 bytes) an op may allocate for one tensor");
}

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

// float32, float64, float16 or bfloat16: the dtypes of the kernels that dispatch on all four.
inline void check_float_dtype(const at::Tensor& t, const char* op, const char* name) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "fastmatte.", op, ": ", name, " must be float32, float64, float16 or bfloat16, got ",
              dtype);
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
