// knn_tiles on CUDA: one thread per row, its top k kept sorted in registers, count read on the
// device (no host sync). With select_tiles' tile_map each thread runs the grid ring search of
// csrc/knn_tiles.h (the CPU kernel's very code); without it, the exhaustive scan of every row
// (exact, but O(count^2) work: the Python API warns). k <= kMaxNeighbours (32) on CUDA, because
// the top k lives in registers. Selection values are not validated here (that would need a host
// sync): a valid row whose tile lies outside tile_map's grid is answered by the exhaustive scan,
// and a tile_map that does not match tiles gives unspecified neighbours, never a bad access.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

#include "checks.h"
#include "knn_tiles.h"

namespace fastmatte {
namespace {

// Small blocks: ~30k rows make only ~1k warps, and whole-GPU balance matters more than
// per-block size; a thread's work varies with how far its k-th neighbour is.
constexpr int kThreads = 128;
constexpr int64_t kMaxNeighbours = 32;

// The k (1 <= k <= kSlots) smallest keys offered so far, ascending, in the last k of kSlots
// registers; the first kSlots - k hold 0, which no key undercuts, so they never move. Keeping
// the k-th key at a fixed index lets every loop unroll over compile-time indices (registers,
// not local memory).
template <int kSlots>
class RegisterTopK {
 public:
  FM_HOST_DEVICE explicit RegisterTopK(int32_t k) : padding_(kSlots - k) { reset(); }

  FM_HOST_DEVICE void reset() {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) keys_[s] = s < padding_ ? 0 : kNoNeighbour;
  }

  FM_HOST_DEVICE uint64_t worst() const { return keys_[kSlots - 1]; }

  // Insertion from the back: slot s takes its left neighbour if the new key sorts before that
  // one, the new key if it sorts between the two, else keeps its own.
  FM_HOST_DEVICE void offer(uint64_t key) {
    if (key >= keys_[kSlots - 1]) return;
#pragma unroll
    for (int s = kSlots - 1; s > 0; --s)
      keys_[s] = key < keys_[s - 1] ? keys_[s - 1] : (key < keys_[s] ? key : keys_[s]);
    keys_[0] = key < keys_[0] ? key : keys_[0];
  }

  // out[0 .. k) = the rows, nearest first, -1 for missing neighbours.
  FM_HOST_DEVICE void write_rows(int32_t* out) const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
      if (s >= padding_) out[s - padding_] = key_row(keys_[s]);
  }

 private:
  uint64_t keys_[kSlots];
  int32_t padding_;
};

// tile_map == nullptr: no grid, every valid row scans all rows.
template <int kSlots>
__global__ void __launch_bounds__(kThreads)
    knn_tiles_kernel(const int32_t* __restrict__ tiles, const int32_t* __restrict__ count_ptr,
                     int32_t capacity, const int32_t* __restrict__ tile_map, int64_t B, int32_t h,
                     int32_t w, int32_t k, int32_t* __restrict__ nbr) {
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (thread >= capacity) return;
  const int32_t i = static_cast<int32_t>(thread);
  int32_t* out = nbr + static_cast<int64_t>(i) * k;
  // As in the reference, the valid rows are those below count, clipped to [0, capacity].
  const int32_t n_raw = *count_ptr;
  const int32_t n = n_raw < 0 ? 0 : (n_raw > capacity ? capacity : n_raw);
  if (i >= n) {
    for (int32_t s = 0; s < k; ++s) out[s] = -1;
    return;
  }
  RegisterTopK<kSlots> top(k);
  const int32_t* tile = tiles + 3 * thread;
  const int32_t b = tile[0], y = tile[1], x = tile[2];
  const bool on_grid = b >= 0 && b < B && y >= 0 && y < h && x >= 0 && x < w;
  if (tile_map != nullptr && on_grid) {
    search_rings(top, tile_map + static_cast<int64_t>(b) * h * w, h, w, tiles, n, i);
  } else {
    scan_all_rows(top, tiles, n, i);
  }
  top.write_rows(out);
}

template <int kSlots>
void launch_knn_tiles(const at::Tensor& tiles, const at::Tensor& count, const int32_t* tile_map,
                      int64_t B, int64_t h, int64_t w, int64_t k, at::Tensor& nbr) {
  const int64_t capacity = tiles.size(0);
  const unsigned int blocks = static_cast<unsigned int>((capacity + kThreads - 1) / kThreads);
  knn_tiles_kernel<kSlots><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      tiles.data_ptr<int32_t>(), count.data_ptr<int32_t>(), static_cast<int32_t>(capacity), tile_map,
      B, static_cast<int32_t>(h), static_cast<int32_t>(w), static_cast<int32_t>(k),
      nbr.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor knn_tiles_cuda(const at::Tensor& tiles, const at::Tensor& count, int64_t k,
                          const std::optional<at::Tensor>& tile_map) {
  check_knn_inputs(tiles, count, k, tile_map);
  TORCH_CHECK(k <= kMaxNeighbours, "fastmatte.knn_tiles: k must be <= ", kMaxNeighbours,
              " on CUDA (each thread keeps its k nearest in registers), got ", k);
  const c10::cuda::CUDAGuard guard(tiles.device());
  const int64_t capacity = tiles.size(0);
  at::Tensor nbr = at::empty({capacity, k}, tiles.options());
  if (capacity == 0 || k == 0) return nbr;

  const int32_t* map = tile_map.has_value() ? tile_map->data_ptr<int32_t>() : nullptr;
  const int64_t B = map ? tile_map->size(0) : 0, h = map ? tile_map->size(1) : 0,
                w = map ? tile_map->size(2) : 0;
  if (k <= 8) {
    launch_knn_tiles<8>(tiles, count, map, B, h, w, k, nbr);
  } else if (k <= 16) {
    launch_knn_tiles<16>(tiles, count, map, B, h, w, k, nbr);
  } else {
    launch_knn_tiles<32>(tiles, count, map, B, h, w, k, nbr);
  }
  return nbr;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CUDA, m) { m.impl("knn_tiles", &knn_tiles_cuda); }

}  // namespace fastmatte
