// knn_tiles on the CPU: for every valid row (at::parallel_for), a ring search on the tile grid
// (csrc/knn_tiles.h). The grid is select_tiles' tile_map when given, otherwise one built here from
// the rows; hand-made selections that no grid can hold (two rows on one tile, or a few tiles far
// out on a huge grid) take the exhaustive per-row scan instead. Results equal
// fastmatte/reference/knn_tiles.py exactly, and the CUDA kernel's.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "checks.h"
#include "knn_tiles.h"

namespace fastmatte {
namespace {

// The k (>= 1) smallest keys offered so far, ascending, in a caller-owned buffer.
class SortedKeys {
 public:
  SortedKeys(uint64_t* keys, int64_t k) : keys_(keys), k_(k) { reset(); }
  void reset() { std::fill(keys_, keys_ + k_, kNoNeighbour); }
  uint64_t worst() const { return keys_[k_ - 1]; }
  void offer(uint64_t key) {
    if (key >= keys_[k_ - 1]) return;
    int64_t s = k_ - 1;
    for (; s > 0 && keys_[s - 1] > key; --s) keys_[s] = keys_[s - 1];
    keys_[s] = key;
  }

 private:
  uint64_t* keys_;
  int64_t k_;
};

// The tile grid the ring search reads: cells[(b * h + y) * w + x] is that tile's row or -1.
// No cells: no usable grid, scan every row.
struct TileGrid {
  const int32_t* cells = nullptr;
  int64_t h = 0, w = 0;
};

// Every valid row must sit in its own cell of tile_map, and every cell that names a valid row
// must be that row's tile; otherwise the ring search would miss or misplace tiles.
void check_tile_map_matches(const at::Tensor& tiles, int64_t n, const at::Tensor& tile_map) {
  const int32_t* t = tiles.data_ptr<int32_t>();
  const int32_t* map = tile_map.data_ptr<int32_t>();
  const int64_t h = tile_map.size(1), w = tile_map.size(2);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t v = map[(t[3 * r] * h + t[3 * r + 1]) * w + t[3 * r + 2]];
    TORCH_CHECK(v == r, "fastmatte.knn_tiles: tiles row ", r, " = (", t[3 * r], ", ", t[3 * r + 1],
                ", ", t[3 * r + 2], ") but tile_map there holds ", v,
                " (tile_map must be select_tiles' map of these tiles)");
  }
  for (int64_t cell = 0; cell < tile_map.numel(); ++cell) {
    const int64_t v = map[cell];
    if (v < 0 || v >= n) continue;
    const int64_t b = cell / (h * w), y = cell / w % h, x = cell % w;
    TORCH_CHECK(t[3 * v] == b && t[3 * v + 1] == y && t[3 * v + 2] == x, "fastmatte.knn_tiles: tile_map[",
                b, ", ", y, ", ", x, "] = ", v, " but tiles row ", v, " is (", t[3 * v], ", ",
                t[3 * v + 1], ", ", t[3 * v + 2], ") (tile_map must be select_tiles' map of these tiles)");
  }
}

// A grid map of the n valid rows, sized by their largest coordinates, stored in `storage`; no
// grid when two rows share a tile or the grid would dwarf the selection.
TileGrid build_tile_grid(const int32_t* t, int64_t n, std::vector<int32_t>& storage) {
  int64_t B = 0, h = 0, w = 0;
  for (int64_t r = 0; r < n; ++r) {
    B = std::max<int64_t>(B, t[3 * r] + 1);
    h = std::max<int64_t>(h, t[3 * r + 1] + 1);
    w = std::max<int64_t>(w, t[3 * r + 2] + 1);
  }
  // Beyond this many empty cells per tile, the rings would cost more than the scan.
  if (B * h * w > 64 * n + (int64_t(1) << 22)) return {};
  storage.assign(B * h * w, -1);
  for (int64_t r = 0; r < n; ++r) {
    int32_t& cell = storage[(t[3 * r] * h + t[3 * r + 1]) * w + t[3 * r + 2]];
    if (cell >= 0) return {};
    cell = static_cast<int32_t>(r);
  }
  return {storage.data(), h, w};
}

at::Tensor knn_tiles_cpu(const at::Tensor& tiles, const at::Tensor& count, int64_t k,
                         const std::optional<at::Tensor>& tile_map) {
  check_knn_inputs(tiles, count, k, tile_map);
  const int64_t capacity = tiles.size(0);
  const int32_t* t = tiles.data_ptr<int32_t>();
  if (tile_map.has_value()) {
    check_selection_values_cpu(tiles, count, tile_map->size(0), tile_map->size(1),
                               tile_map->size(2), "knn_tiles");
  } else {
    check_selection_values_cpu(tiles, count, std::numeric_limits<int32_t>::max(), kMaxGridSide,
                               kMaxGridSide, "knn_tiles");
  }
  const int32_t n = count.item<int32_t>();
  TileGrid grid;
  std::vector<int32_t> own_cells;
  if (tile_map.has_value()) {
    check_tile_map_matches(tiles, n, *tile_map);
    grid = {tile_map->data_ptr<int32_t>(), tile_map->size(1), tile_map->size(2)};
  } else {
    grid = build_tile_grid(t, n, own_cells);
  }

  at::Tensor nbr = at::full({capacity, k}, -1, tiles.options());
  // At most n - 1 neighbours exist; the slots past them stay -1.
  const int64_t slots = std::min<int64_t>(k, n - 1);
  if (slots <= 0) return nbr;
  int32_t* out = nbr.data_ptr<int32_t>();
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> keys(slots);
    for (int64_t i = begin; i < end; ++i) {
      SortedKeys top(keys.data(), slots);
      const int32_t row = static_cast<int32_t>(i);
      if (grid.cells != nullptr) {
        const int32_t* plane = grid.cells + t[3 * i] * grid.h * grid.w;
        search_rings(top, plane, static_cast<int32_t>(grid.h), static_cast<int32_t>(grid.w), t, n, row);
      } else {
        scan_all_rows(top, t, n, row);
      }
      for (int64_t s = 0; s < slots; ++s) out[i * k + s] = key_row(keys[s]);
    }
  });
  return nbr;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("knn_tiles", &knn_tiles_cpu); }

}  // namespace fastmatte
