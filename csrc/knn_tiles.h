// knn_tiles pieces shared by the CPU and CUDA kernels: input checks, the neighbour order, the
// grid ring search and the exhaustive scan, so both backends make exactly the same choices.
// A top-k container `TopK` offers: offer(key) (keeps the k smallest keys), worst() (the k-th
// smallest key held, kNoNeighbour while fewer than k are held) and reset() (forget everything).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <optional>

#include "checks.h"
#include "resample.h"  // FM_HOST_DEVICE

namespace fastmatte {

// Tile coordinates lie in [0, kMaxGridSide): squared distances then fit in 31 bits.
constexpr int64_t kMaxGridSide = 32768;

// A candidate neighbour as one 64-bit key, squared distance above row index, so that comparing
// keys is the reference's order: nearer first, ties by lower row. An empty slot is kNoNeighbour.
constexpr uint64_t kNoNeighbour = ~uint64_t(0);

FM_HOST_DEVICE uint64_t neighbour_key(uint32_t squared_distance, int32_t row) {
  return (static_cast<uint64_t>(squared_distance) << 32) | static_cast<uint32_t>(row);
}

FM_HOST_DEVICE uint32_t key_distance(uint64_t key) { return static_cast<uint32_t>(key >> 32); }

FM_HOST_DEVICE int32_t key_row(uint64_t key) {
  return key == kNoNeighbour ? -1 : static_cast<int32_t>(static_cast<uint32_t>(key));
}

// Unsigned arithmetic: exact for coordinates in [0, kMaxGridSide), and still defined (if
// meaningless) for the unvalidated device inputs outside that range.
FM_HOST_DEVICE uint32_t squared_distance(int32_t y0, int32_t x0, int32_t y1, int32_t x1) {
  const uint32_t dy = static_cast<uint32_t>(y1) - static_cast<uint32_t>(y0);
  const uint32_t dx = static_cast<uint32_t>(x1) - static_cast<uint32_t>(x0);
  return dy * dy + dx * dx;
}

// The reference's definition for one query row: every other row < count of the same image.
template <typename TopK>
FM_HOST_DEVICE void scan_all_rows(TopK& top, const int32_t* tiles, int32_t count, int32_t self) {
  const int32_t* query = tiles + 3 * static_cast<int64_t>(self);
  const int32_t b = query[0], y = query[1], x = query[2];
  for (int32_t j = 0; j < count; ++j) {
    const int32_t* t = tiles + 3 * static_cast<int64_t>(j);
    if (j != self && t[0] == b) top.offer(neighbour_key(squared_distance(y, x, t[1], t[2]), j));
  }
}

// Offers the rows held by the cells at Chebyshev distance exactly r >= 1 from (y, x), clipped to
// the h x w plane (each cell: its row, or anything outside [0, count) for none). A cell farther
// than the k-th neighbour held so far cannot enter the top k, so its map entry is not read.
template <typename TopK>
FM_HOST_DEVICE void offer_ring(TopK& top, const int32_t* plane, int32_t h, int32_t w, int32_t y,
                               int32_t x, int32_t r, int32_t count) {
  auto offer_cell = [&](int32_t cy, int32_t cx) {
    const uint32_t d2 = squared_distance(y, x, cy, cx);
    if (d2 > key_distance(top.worst())) return;
    const int32_t row = plane[cy * w + cx];
    if (row >= 0 && row < count) top.offer(neighbour_key(d2, row));
  };
  const int32_t x0 = x - r < 0 ? 0 : x - r, x1 = x + r >= w ? w - 1 : x + r;
  const int32_t y0 = y - r + 1 < 0 ? 0 : y - r + 1, y1 = y + r - 1 >= h ? h - 1 : y + r - 1;
  if (y - r >= 0)
    for (int32_t cx = x0; cx <= x1; ++cx) offer_cell(y - r, cx);
  if (y + r < h)
    for (int32_t cx = x0; cx <= x1; ++cx) offer_cell(y + r, cx);
  if (x - r >= 0)
    for (int32_t cy = y0; cy <= y1; ++cy) offer_cell(cy, x - r);
  if (x + r < w)
    for (int32_t cy = y0; cy <= y1; ++cy) offer_cell(cy, x + r);
}

// The k nearest rows to row `self`, whose tile (y, x) lies in the h x w `plane` of its image's
// tile map (the plane's cell of `self` holds `self` and no other cell does). Rings r = 1, 2, ...
// around the tile: after ring r every unseen tile is at squared distance >= (r+1)^2, so the
// search stops once the k-th neighbour is strictly nearer than that (an unseen tile at exactly
// (r+1)^2 with a lower row could still displace it), or when the rings cover the plane. Few tiles
// spread over a large grid would make the rings cost more than reading every row, so once the
// next ring's square outgrows count the search restarts as the exhaustive scan (same result).
template <typename TopK>
FM_HOST_DEVICE void search_rings(TopK& top, const int32_t* plane, int32_t h, int32_t w,
                                 const int32_t* tiles, int32_t count, int32_t self) {
  const int32_t* query = tiles + 3 * static_cast<int64_t>(self);
  const int32_t y = query[1], x = query[2];
  const int32_t reach_y = y > h - 1 - y ? y : h - 1 - y, reach_x = x > w - 1 - x ? x : w - 1 - x;
  const int32_t reach = reach_y > reach_x ? reach_y : reach_x;  // the ring that covers the plane
  for (int32_t r = 1; r <= reach; ++r) {
    const int64_t side = 2 * static_cast<int64_t>(r) + 1;
    if (side * side > count) {
      top.reset();
      scan_all_rows(top, tiles, count, self);
      return;
    }
    offer_ring(top, plane, h, w, y, x, r, count);
    if (key_distance(top.worst()) < static_cast<uint32_t>((r + 1) * (r + 1))) return;
  }
}

// Checks shared by both devices (the selection's values are checked on the CPU only).
inline void check_knn_inputs(const at::Tensor& tiles, const at::Tensor& count, int64_t k,
                             const std::optional<at::Tensor>& tile_map) {
  const char* op = "knn_tiles";
  check_selection(tiles, count, tiles, op, "tiles");
  check_int_range(k, 0, kInt32Max, op, "k");
  TORCH_CHECK(tiles.size(0) <= std::numeric_limits<int32_t>::max(),
              "fastmatte.knn_tiles: tiles must have fewer than 2^31 rows, got ", tiles.size(0));
  check_output_size({tiles.size(0), k}, at::kInt, op, "nbr");
  if (!tile_map.has_value()) return;
  const at::Tensor& map = *tile_map;
  check_rank(map, op, "tile_map", 3, "[B, h, w]");
  check_dtype(map, at::kInt, op, "tile_map");
  check_contiguous(map, op, "tile_map");
  check_same_device(map, tiles, op, "tile_map", "tiles");
  TORCH_CHECK(map.size(1) <= kMaxGridSide && map.size(2) <= kMaxGridSide,
              "fastmatte.knn_tiles: tile_map's grid must be at most ", kMaxGridSide, " x ",
              kMaxGridSide, " tiles, got ", map.sizes());
}

}  // namespace fastmatte
