"""CRA's relative-position index for Triton kernels (same rule as csrc/relative_position.h)."""
import triton
import triton.language as tl


@triton.jit
def relative_position_index(query_y, query_x, key_y, key_x, SEARCH_RANGE: tl.constexpr):
    """Bias-table entry of the key seen from the query: (dy+s-1)*(2s-1)+(dx+s-1) when
    |dy|, |dx| <= s-1, else (2s-1)^2 (the shared out-of-range entry)."""
    dy = key_y - query_y
    dx = key_x - query_x
    reach = SEARCH_RANGE - 1
    side = 2 * SEARCH_RANGE - 1
    inside = (dy >= -reach) & (dy <= reach) & (dx >= -reach) & (dx <= reach)
    return tl.where(inside, (dy + reach) * side + (dx + reach), side * side)
