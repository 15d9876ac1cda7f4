// select_tiles on the GPU, with no host synchronization (it runs under CUDA-graph capture):
//   1. classify: per tile, the torch.argmax test and a 64-bit order key; count the candidates.
//   2. threshold (one block): if candidates > capacity, radix-select the capacity-th largest key.
//   3. mark + exclusive scan: each kept tile's row in raster order, computed inside tile_map.
//   4. emit: tiles rows and the final tile_map.
// The result is identical to the reference (fastmatte/reference/select_tiles.py) and to
// csrc/cpu/select_tiles.cpp; for float64 the argmax compares in double, as torch.argmax does.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cub/cub.cuh>
#include <torch/library.h>

#include <cstdint>
#include <limits>

#include "select_tiles.h"

namespace fastmatte {
namespace {

using order_key = unsigned long long;
constexpr int kTileThreads = 256;
constexpr int kSelectThreads = 1024;
constexpr int kDigitBits = 8;
constexpr int kDigits = 1 << kDigitBits;

// torch.argmax semantics: the first maximum wins, and the first NaN wins over everything.
// Comparing in opmath (float for half/bfloat16/float, double for double) is exact.
template <typename scalar_t>
__device__ int64_t argmax_class(const scalar_t* v, int64_t classes, int64_t stride) {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t best = 0;
  acc_t best_v = static_cast<acc_t>(v[0]);
  for (int64_t k = 1; k < classes && !isnan(best_v); ++k) {
    const acc_t x = static_cast<acc_t>(v[k * stride]);
    if (isnan(x) || x > best_v) {
      best = k;
      best_v = x;
    }
  }
  return best;
}

// Maps a float score to a uint32 whose unsigned order is the ranking order of the scores:
// every NaN is one value above +inf, and -0.0 equals +0.0 (as in torch.sort / the CPU kernel).
// Non-negative floats have bit patterns increasing with the value, so setting the sign bit puts
// them in [0x80000000, 0xFF800000]; negative floats have bit patterns increasing with the
// magnitude, so inverting all bits puts them in [0x007FFFFF (-inf), 0x7FFFFFFE], increasing
// with the value. The result is therefore never below 0x007FFFFF, in particular never 0.
__device__ uint32_t orderable_score(float score) {
  if (isnan(score)) return 0xFFFFFFFFu;
  const uint32_t bits = score == 0.0f ? 0u : __float_as_uint(score);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// A candidate's key: larger key == ranks before (higher score, then lower raster index).
// The high half is never 0, so no candidate has key 0, which marks a non-candidate; keys of
// distinct tiles differ in the low half, so all candidate keys are distinct.
__device__ order_key candidate_key(float score, int64_t raster) {
  return (static_cast<order_key>(orderable_score(score)) << 32) |
         static_cast<order_key>(0xFFFFFFFFu - static_cast<uint32_t>(raster));
}

// Kept iff a candidate whose key reaches the threshold (threshold 0 keeps every candidate).
__device__ bool is_kept(order_key key, order_key threshold) { return key != 0 && key >= threshold; }

template <typename scalar_t>
__global__ void __launch_bounds__(kTileThreads)
    classify_tiles_kernel(const scalar_t* __restrict__ trimap, int64_t n_tiles, int64_t classes,
                          int64_t plane, int64_t unknown_class, order_key* __restrict__ keys,
                          int32_t* __restrict__ candidates) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  bool is_candidate = false;
  if (i < n_tiles) {
    const int64_t b = i / plane;
    const scalar_t* v = trimap + b * classes * plane + (i - b * plane);
    is_candidate = argmax_class(v, classes, plane) == unknown_class;
    keys[i] = is_candidate ? candidate_key(static_cast<float>(v[unknown_class * plane]), i) : 0;
  }
  // Every thread of the block reaches this barrier (no early return above).
  const int block_candidates = __syncthreads_count(is_candidate);
  if (threadIdx.x == 0 && block_candidates > 0) atomicAdd(candidates, block_candidates);
}

// One block. Writes count = min(candidates, capacity) and a threshold such that exactly `count`
// candidate keys pass is_kept: 0 if every candidate fits, else the capacity-th largest key's
// radix prefix. MSB-first radix select over 8-bit digits: `prefix` holds the digits fixed so
// far, `rank` the rank (1-based, from the top) of the wanted key among the candidate keys that
// share that prefix; invariant: 1 <= rank <= their number. Once all keys sharing the prefix are
// wanted (bucket size == rank), the prefix itself (remaining bits zero) is the threshold: those
// keys are >= it, keys with a larger prefix are > it (there are capacity - rank of them), and all
// others are < it. Keys are distinct, so this happens at the last digit at the latest.
__global__ void __launch_bounds__(kSelectThreads)
    select_threshold_kernel(const order_key* __restrict__ keys, int64_t n_tiles,
                            const int32_t* __restrict__ candidates, int64_t capacity,
                            order_key* __restrict__ threshold, int32_t* __restrict__ count) {
  __shared__ int32_t histogram[kDigits];
  __shared__ order_key prefix;
  __shared__ int64_t rank;
  __shared__ bool found;

  const int64_t n_candidates = *candidates;  // the same value in every thread: uniform exit
  if (n_candidates <= capacity) {
    if (threadIdx.x == 0) {
      *threshold = 0;
      *count = static_cast<int32_t>(n_candidates);
    }
    return;
  }
  // Here 1 <= capacity < n_candidates (the host never launches this with capacity 0).
  if (threadIdx.x == 0) {
    *count = static_cast<int32_t>(capacity);
    prefix = 0;
    rank = capacity;
  }
  order_key fixed_mask = 0;  // the bits of `prefix` already decided, identical in every thread
  for (int shift = 64 - kDigitBits; shift >= 0; shift -= kDigitBits) {
    for (int d = threadIdx.x; d < kDigits; d += blockDim.x) histogram[d] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n_tiles; i += blockDim.x) {
      const order_key key = keys[i];
      if (key != 0 && (key & fixed_mask) == prefix)
        atomicAdd(&histogram[(key >> shift) & (kDigits - 1)], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      // Walk the digits from the top until the bucket that holds the rank-th largest key.
      int digit = kDigits - 1;
      int64_t above = 0;
      while (above + histogram[digit] < rank) above += histogram[digit--];
      rank -= above;
      prefix |= static_cast<order_key>(digit) << shift;
      found = histogram[digit] == rank;
    }
    __syncthreads();
    fixed_mask |= static_cast<order_key>(kDigits - 1) << shift;
    if (found) break;  // shared value, read by all threads after the barrier: uniform
  }
  if (threadIdx.x == 0) *threshold = prefix;
}

// rows[i] = 1 for a kept tile, else 0 (the input of the in-place exclusive scan).
__global__ void __launch_bounds__(kTileThreads)
    mark_kept_kernel(const order_key* __restrict__ keys, int64_t n_tiles,
                     const order_key* __restrict__ threshold, int32_t* __restrict__ rows) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_tiles) rows[i] = is_kept(keys[i], *threshold) ? 1 : 0;
}

// After the scan, tile_map[i] holds the row of tile i if it is kept; -1 marks the others.
__global__ void __launch_bounds__(kTileThreads)
    emit_tiles_kernel(const order_key* __restrict__ keys, int64_t n_tiles, int64_t h, int64_t w,
                      const order_key* __restrict__ threshold, int32_t* __restrict__ tile_map,
                      int32_t* __restrict__ tiles) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_tiles) return;
  if (!is_kept(keys[i], *threshold)) {
    tile_map[i] = -1;
    return;
  }
  const int64_t row = tile_map[i];
  const int64_t plane = h * w;
  tiles[3 * row] = static_cast<int32_t>(i / plane);
  tiles[3 * row + 1] = static_cast<int32_t>((i % plane) / w);
  tiles[3 * row + 2] = static_cast<int32_t>(i % w);
}

unsigned int tile_blocks(int64_t n_tiles) {
  return static_cast<unsigned int>((n_tiles + kTileThreads - 1) / kTileThreads);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_tiles_cuda(
    const at::Tensor& trimap, int64_t capacity, int64_t unknown_class) {
  check_select_tiles_inputs(trimap, capacity, unknown_class);
  const int64_t B = trimap.size(0), K = trimap.size(1), h = trimap.size(2), w = trimap.size(3);
  const int64_t plane = h * w, n_tiles = B * plane;
  // Rows, counts and the low half of the order keys are 32-bit.
  TORCH_CHECK(n_tiles <= std::numeric_limits<int32_t>::max(),
              "fastmatte.select_tiles: the tile grid must have fewer than 2^31 tiles, got B*h*w = ",
              n_tiles);

  const c10::cuda::CUDAGuard guard(trimap.device());
  auto int_opts = trimap.options().dtype(at::kInt);
  at::Tensor tiles = at::full({capacity, 3}, -1, int_opts);
  at::Tensor tile_map = at::empty({B, h, w}, int_opts);
  at::Tensor count = at::zeros({1}, int_opts);
  at::Tensor candidates = at::zeros({1}, int_opts);
  if (n_tiles == 0) return {tiles, count, tile_map, candidates};

  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto key_opts = trimap.options().dtype(at::kLong);
  at::Tensor keys = at::empty({n_tiles}, key_opts);
  order_key* key_ptr = reinterpret_cast<order_key*>(keys.data_ptr<int64_t>());
  int32_t* candidates_ptr = candidates.data_ptr<int32_t>();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, trimap.scalar_type(), "select_tiles_cuda", [&] {
    classify_tiles_kernel<scalar_t><<<tile_blocks(n_tiles), kTileThreads, 0, stream>>>(
        trimap.data_ptr<scalar_t>(), n_tiles, K, plane, unknown_class, key_ptr, candidates_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  if (capacity == 0) {  // nothing is kept: count stays 0, every tile maps to -1
    tile_map.fill_(-1);
    return {tiles, count, tile_map, candidates};
  }

  at::Tensor threshold = at::empty({1}, key_opts);
  order_key* threshold_ptr = reinterpret_cast<order_key*>(threshold.data_ptr<int64_t>());
  select_threshold_kernel<<<1, kSelectThreads, 0, stream>>>(key_ptr, n_tiles, candidates_ptr, capacity,
                                                            threshold_ptr, count.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  int32_t* rows = tile_map.data_ptr<int32_t>();
  mark_kept_kernel<<<tile_blocks(n_tiles), kTileThreads, 0, stream>>>(key_ptr, n_tiles, threshold_ptr, rows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // In-place exclusive sum: the size query runs on the host only and launches nothing.
  const int num_items = static_cast<int>(n_tiles);
  size_t temp_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, rows, rows, num_items, stream));
  at::Tensor temp = at::empty({static_cast<int64_t>(temp_bytes)}, trimap.options().dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.data_ptr(), temp_bytes, rows, rows, num_items, stream));

  emit_tiles_kernel<<<tile_blocks(n_tiles), kTileThreads, 0, stream>>>(
      key_ptr, n_tiles, h, w, threshold_ptr, rows, tiles.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {tiles, count, tile_map, candidates};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CUDA, m) { m.impl("select_tiles", &select_tiles_cuda); }

}  // namespace fastmatte
