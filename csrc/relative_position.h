// CRA's relative-position index into the (2s-1)^2+1 bias table: key position minus query
// position; the last entry is shared by the offsets outside the window, which is either a
// per-axis range check or (the authors' code) a range check of the flat index.
#pragma once
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include "resample.h"  // FM_HOST_DEVICE

namespace fastmatte {

// The ops' `str bucketing` argument: "per_axis" or "official".
enum class Bucketing { kPerAxis, kOfficial };

inline Bucketing parse_bucketing(c10::string_view bucketing, const char* op) {
  TORCH_CHECK(bucketing == "per_axis" || bucketing == "official", "fastmatte.", op,
              ": bucketing must be \"per_axis\" or \"official\", got '", bucketing, "'");
  return bucketing == "official" ? Bucketing::kOfficial : Bucketing::kPerAxis;
}

// flat = (dy+s-1)*(2s-1)+(dx+s-1) inside the window, else (2s-1)^2. Inside: kPerAxis,
// |dy| <= s-1 and |dx| <= s-1; kOfficial, 0 <= flat < (2s-1)^2 (so (0, +4) with s=4 is the
// bucket of (+1, -3)).
FM_HOST_DEVICE int64_t relative_position_index(int64_t query_y, int64_t query_x, int64_t key_y,
                                               int64_t key_x, int64_t search_range,
                                               Bucketing bucketing) {
  const int64_t dy = key_y - query_y, dx = key_x - query_x, reach = search_range - 1;
  const int64_t side = 2 * search_range - 1, flat = (dy + reach) * side + (dx + reach);
  const bool inside = bucketing == Bucketing::kOfficial
                          ? flat >= 0 && flat < side * side
                          : dy >= -reach && dy <= reach && dx >= -reach && dx <= reach;
  return inside ? flat : side * side;
}

inline int64_t bias_table_size(int64_t search_range) {
  return (2 * search_range - 1) * (2 * search_range - 1) + 1;
}

}  // namespace fastmatte
