// connectivity_error on the CPU: DIM's Conn metric of each image (thresholds k/10, theta 0.15).
//
// DIM labels the 4-connected components of (pred >= t_k) & (gt >= t_k) at each t_k = k/10,
// k = 1..10, and keeps the largest, Omega_k; a pixel's l is t_{j-1} for the first k at which it
// is outside Omega_k (t_10 = 1 if it never is). Here one pass serves all ten thresholds:
//  1. A pixel's level is the number of thresholds both mattes reach; the k-th mask is the pixels
//     of level >= k, so the masks are nested.
//  2. A union-find adds the pixels from level 10 down. Once level k is in, its trees are the
//     components of the k-th mask. Each root keeps its size and the smallest column-major index
//     of its pixels, so the largest component (on a tie the one whose first pixel comes first in
//     column-major order, as MATLAB's bwconncomp numbers them) is tracked while uniting: sizes
//     only grow and a merged component outranks both parts, so the best root seen is the best
//     component present.
//  3. Omega_1 ⊇ Omega_2 ⊇ ... ⊇ Omega_K holds up to some K (it stops where Omega_{K+1} is empty or
//     lies in another component of the K-th mask, hence is disjoint from Omega_K). For k <= K,
//     Omega_k is the k-th-mask component of any pixel q of Omega_K, so a pixel leaves the Omegas
//     at j = 1 + min(K, c), c the highest level at which it is connected to q: the bottleneck
//     value of its widest path to q, which a flood fill from q with a bucket queue finds.
//  4. l = t_{j-1}; phi = 1 - d * (d >= theta) with d = alpha - l; the sum over the counted
//     pixels of |phi_pred - phi_gt| / 1000, in the working precision and summed in double.
// uint8 mattes are read as they are, each sample as v / 255 in float (matte_value), so they give
// the same bits as their float32 copies.
// The result does not depend on the number of threads.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <vector>

#include "matting_metrics.h"

namespace fastmatte {
namespace {

constexpr int kLevels = 10;
constexpr int64_t kChunk = 1 << 16;  // pixels per task of the per-pixel passes

// t_k = k / 10 correctly rounded in T, so a value equal to a threshold passes it; theta = 0.15.
template <typename T>
struct Thresholds {
  std::array<T, kLevels + 1> t;
  T theta = static_cast<T>(0.15);
  Thresholds() {
    for (int k = 0; k <= kLevels; ++k) t[k] = static_cast<T>(k) / static_cast<T>(kLevels);
  }
};

// Union-find over row-major pixel indices (union by size, path halving) that tracks the largest
// component: larger size wins, then the smaller first column-major index.
class Components {
 public:
  // Entries are written by add() before any use: left uninitialized, not zeroed.
  explicit Components(int64_t n)
      : parent_(std::make_unique_for_overwrite<int32_t[]>(n)),
        size_(std::make_unique_for_overwrite<int32_t[]>(n)),
        first_(std::make_unique_for_overwrite<int32_t[]>(n)) {}

  void add(int32_t p, int32_t column_major) {
    parent_[p] = p;
    size_[p] = 1;
    first_[p] = column_major;
    consider(p);
  }

  int32_t find(int32_t p) {
    while (parent_[p] != p) {
      parent_[p] = parent_[parent_[p]];
      p = parent_[p];
    }
    return p;
  }

  void unite(int32_t a, int32_t b) {
    a = find(a);
    b = find(b);
    if (a == b) return;
    if (size_[a] < size_[b]) std::swap(a, b);
    parent_[b] = a;
    size_[a] += size_[b];
    first_[a] = std::min(first_[a], first_[b]);
    consider(a);
  }

  int32_t best() const { return best_; }  // a root of the largest component; -1 while empty

 private:
  void consider(int32_t r) {
    if (best_ < 0 || size_[r] > best_size_ || (size_[r] == best_size_ && first_[r] < best_first_)) {
      best_ = r;
      best_size_ = size_[r];
      best_first_ = first_[r];
    }
  }

  std::unique_ptr<int32_t[]> parent_, size_, first_;
  int32_t best_ = -1, best_size_ = 0, best_first_ = 0;
};

// Calls visit(n) for each 4-neighbor n of pixel p = y * W + x.
template <typename F>
void for_each_neighbor(int32_t p, int64_t H, int64_t W, F&& visit) {
  const int64_t y = p / W, x = p % W;
  if (x > 0) visit(p - 1);
  if (x + 1 < W) visit(p + 1);
  if (y > 0) visit(static_cast<int32_t>(p - W));
  if (y + 1 < H) visit(static_cast<int32_t>(p + W));
}

// Per pixel, min(K, level of its widest path to q) as in step 3 of the header comment: 0 for
// pixels not connected to q even at level 1.
std::vector<uint8_t> leave_levels(const std::vector<uint8_t>& level, int64_t H, int64_t W,
                                  int32_t q, int K) {
  std::vector<uint8_t> reach(H * W, 0);
  if (K == 0) return reach;
  std::array<std::vector<int32_t>, kLevels + 1> bucket;
  reach[q] = static_cast<uint8_t>(K);
  bucket[K].push_back(q);
  for (int b = K; b >= 1; --b) {
    std::vector<int32_t>& queue = bucket[b];
    while (!queue.empty()) {
      const int32_t p = queue.back();
      queue.pop_back();
      if (reach[p] != b) continue;  // reached at a higher level after it was queued here
      for_each_neighbor(p, H, W, [&](int32_t n) {
        const uint8_t v = std::min<uint8_t>(static_cast<uint8_t>(b), level[n]);
        if (v > reach[n]) {
          reach[n] = v;
          bucket[v].push_back(n);
        }
      });
    }
    std::vector<int32_t>().swap(queue);
  }
  return reach;
}

template <typename In, typename T>
double image_error(const In* pred, const In* gt, const CountedPixels& counted, int64_t H, int64_t W,
                   const Thresholds<T>& th) {
  const int64_t N = H * W;
  // 1. Levels, then the pixels of level >= 1 grouped by level (counting sort).
  std::vector<uint8_t> level(N);
  at::parallel_for(0, N, kChunk, [&](int64_t from, int64_t to) {
    for (int64_t p = from; p < to; ++p) {
      // Both reach t iff the smaller does; a NaN in either reaches nothing.
      const T vp = matte_value(pred[p]), vg = matte_value(gt[p]);
      const T a = vp < vg ? vp : vg;
      int n = 0;
      for (int k = 1; k <= kLevels; ++k) n += a >= th.t[k];
      level[p] = std::isnan(vp) || std::isnan(vg) ? 0 : static_cast<uint8_t>(n);
    }
  });
  std::array<int64_t, kLevels + 2> begin{};
  for (int64_t p = 0; p < N; ++p) ++begin[level[p] + 1];
  for (int k = 1; k <= kLevels + 1; ++k) begin[k] += begin[k - 1];
  const int64_t unreached = begin[1];  // level-0 pixels are never added
  for (int k = 1; k <= kLevels + 1; ++k) begin[k] -= unreached;
  std::vector<int32_t> order(begin[kLevels + 1]);
  std::array<int64_t, kLevels + 2> fill = begin;
  for (int64_t p = 0; p < N; ++p)
    if (level[p] > 0) order[fill[level[p]]++] = static_cast<int32_t>(p);

  // 2. Omega_k (one of its pixels, -1 if the k-th mask is empty) and whether Omega_k ⊆ Omega_{k-1}.
  Components components(N);
  std::array<int32_t, kLevels + 2> omega;
  omega.fill(-1);
  std::array<bool, kLevels + 2> nested{};
  for (int k = kLevels; k >= 1; --k) {
    for (int64_t i = begin[k]; i < begin[k + 1]; ++i) {
      const int32_t p = order[i];
      components.add(p, static_cast<int32_t>((p % W) * H + p / W));
    }
    for (int64_t i = begin[k]; i < begin[k + 1]; ++i) {
      const int32_t p = order[i];
      for_each_neighbor(p, H, W, [&](int32_t n) {
        if (level[n] >= k) components.unite(p, n);
      });
    }
    omega[k] = components.best();
    if (k < kLevels && omega[k + 1] >= 0)
      nested[k + 1] = components.find(omega[k + 1]) == components.find(omega[k]);
  }

  // 3. The nested chain Omega_1..Omega_K and each pixel's l = t_{min(K, widest path level)}.
  int K = 0;
  while (K < kLevels && omega[K + 1] >= 0 && (K == 0 || nested[K + 1])) ++K;
  const std::vector<uint8_t> reach = leave_levels(level, H, W, K > 0 ? omega[K] : -1, K);

  // 4. phi and the sum over the mask: partial sums over fixed chunks, added in order, so the
  // result does not depend on the number of threads.
  std::vector<double> partial((N + kChunk - 1) / kChunk, 0.0);
  at::parallel_for(0, static_cast<int64_t>(partial.size()), 1, [&](int64_t from, int64_t to) {
    for (int64_t c = from; c < to; ++c) {
      double sum = 0.0;
      for (int64_t p = c * kChunk; p < std::min(N, (c + 1) * kChunk); ++p) {
        if (!counted(p)) continue;
        const T l = th.t[reach[p]];
        const T d_pred = matte_value(pred[p]) - l, d_gt = matte_value(gt[p]) - l;
        const T phi_pred = T(1) - d_pred * static_cast<T>(d_pred >= th.theta);
        const T phi_gt = T(1) - d_gt * static_cast<T>(d_gt >= th.theta);
        sum += static_cast<double>(std::abs(phi_pred - phi_gt));
      }
      partial[c] = sum;
    }
  });
  double sum = 0.0;
  for (const double s : partial) sum += s;
  return sum / 1000.0;
}

at::Tensor connectivity_error_cpu(const at::Tensor& pred, const at::Tensor& gt,
                                  const std::optional<at::Tensor>& mask) {
  check_metric_inputs(pred, gt, mask, "connectivity_error");
  const int64_t B = pred.size(0), H = pred.size(1), W = pred.size(2);
  at::Tensor out = at::zeros({B}, pred.options().dtype(at::kDouble));
  if (H == 0 || W == 0) return out;
  const CountedPixels counted(mask);
  double* o = out.data_ptr<double>();
  dispatch_mattes(pred.scalar_type(), [&](auto in, auto working) {
    using In = decltype(in);
    using T = decltype(working);
    const Thresholds<T> th;
    const In* p = pred.data_ptr<In>();
    const In* g = gt.data_ptr<In>();
    auto image = [&](int64_t b) {
      const int64_t offset = b * H * W;
      o[b] = image_error(p + offset, g + offset, counted.at(offset), H, W, th);
    };
    // The union-find of an image is sequential: with enough images, one task each (their
    // per-pixel passes then run inline); otherwise the per-pixel passes are parallel.
    if (B >= at::get_num_threads()) {
      at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) image(b);
      });
    } else {
      for (int64_t b = 0; b < B; ++b) image(b);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("connectivity_error", &connectivity_error_cpu); }

}  // namespace fastmatte
