// CRA's relative-position index into the (2s-1)^2+1 bias table: key position minus query
// position, per-axis range check; every out-of-range offset shares the last entry.
#pragma once
#include "resample.h"  // FM_HOST_DEVICE

namespace fastmatte {

FM_HOST_DEVICE int64_t relative_position_index(int64_t query_y, int64_t query_x, int64_t key_y,
                                               int64_t key_x, int64_t search_range) {
  const int64_t dy = key_y - query_y, dx = key_x - query_x, reach = search_range - 1;
  const int64_t side = 2 * search_range - 1;
  const bool inside = dy >= -reach && dy <= reach && dx >= -reach && dx <= reach;
  return inside ? (dy + reach) * side + (dx + reach) : side * side;
}

inline int64_t bias_table_size(int64_t search_range) {
  return (2 * search_range - 1) * (2 * search_range - 1) + 1;
}

}  // namespace fastmatte
