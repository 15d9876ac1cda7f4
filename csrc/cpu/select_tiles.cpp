// select_tiles on the CPU: argmax per tile, then (if there are more candidates than capacity)
// the `capacity` highest unknown-class scores, emitted in raster order.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "argmax.h"
#include "select_tiles.h"

namespace fastmatte {
namespace {

// Strict "ranks before" for the capacity cut: higher score first (NaN highest), then raster order.
bool ranks_before(float sa, int64_t a, float sb, int64_t b) {
  const bool na = std::isnan(sa), nb = std::isnan(sb);
  if (na != nb) return na;
  if (!na && sa != sb) return sa > sb;
  return a < b;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_tiles_cpu(
    const at::Tensor& trimap, int64_t capacity, int64_t unknown_class) {
  check_select_tiles_inputs(trimap, capacity, unknown_class);
  const int64_t B = trimap.size(0), K = trimap.size(1), h = trimap.size(2), w = trimap.size(3);
  const int64_t plane = h * w, n_tiles = B * plane;

  auto int_opts = trimap.options().dtype(at::kInt);
  at::Tensor tiles = at::full({capacity, 3}, -1, int_opts);
  at::Tensor tile_map = at::full({B, h, w}, -1, int_opts);
  at::Tensor count = at::zeros({1}, int_opts);
  at::Tensor candidates = at::zeros({1}, int_opts);

  std::vector<uint8_t> is_candidate(n_tiles);
  std::vector<float> score(n_tiles);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, trimap.scalar_type(), "select_tiles_cpu", [&] {
    const scalar_t* data = trimap.data_ptr<scalar_t>();
    at::parallel_for(0, n_tiles, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* v = data + (i / plane) * K * plane + i % plane;
        is_candidate[i] = argmax_class(v, K, plane) == unknown_class;
        score[i] = static_cast<float>(v[unknown_class * plane]);
      }
    });
  });

  std::vector<int64_t> cand;
  for (int64_t i = 0; i < n_tiles; ++i)
    if (is_candidate[i]) cand.push_back(i);
  const int64_t n = static_cast<int64_t>(cand.size());
  if (n > capacity) {
    std::nth_element(cand.begin(), cand.begin() + capacity, cand.end(), [&](int64_t a, int64_t b) {
      return ranks_before(score[a], a, score[b], b);
    });
    cand.resize(capacity);
    std::sort(cand.begin(), cand.end());
  }

  int32_t* t = tiles.data_ptr<int32_t>();
  int32_t* map = tile_map.data_ptr<int32_t>();
  for (int64_t r = 0; r < static_cast<int64_t>(cand.size()); ++r) {
    const int64_t i = cand[r];
    t[3 * r] = static_cast<int32_t>(i / plane);
    t[3 * r + 1] = static_cast<int32_t>((i % plane) / w);
    t[3 * r + 2] = static_cast<int32_t>(i % w);
    map[i] = static_cast<int32_t>(r);
  }
  count.fill_(static_cast<int64_t>(cand.size()));
  candidates.fill_(n);
  return {tiles, count, tile_map, candidates};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("select_tiles", &select_tiles_cpu); }

}  // namespace fastmatte
