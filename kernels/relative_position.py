"""CRA's relative-position index for Triton kernels (same rule as csrc/relative_position.h)."""
import triton
import triton.language as tl


@triton.jit
def relative_position_index(query_y, query_x, key_y, key_x, SEARCH_RANGE: tl.constexpr,
                            OFFICIAL: tl.constexpr):
    """Bias-table entry (int32) of the key seen from the query: flat = (dy+s-1)*(2s-1)+(dx+s-1)
    inside the window, else (2s-1)^2 (the shared entry). Inside: |dy|, |dx| <= s-1, or with
    OFFICIAL (bucketing="official", the authors' code) 0 <= flat < (2s-1)^2."""
    dy = key_y - query_y
    dx = key_x - query_x
    reach = SEARCH_RANGE - 1
    side = 2 * SEARCH_RANGE - 1
    if OFFICIAL:
        # In int64: for far-apart tiles the flat index can overflow int32 and wrap into range.
        flat = (dy.to(tl.int64) + reach) * side + (dx.to(tl.int64) + reach)
        rel = tl.where((flat >= 0) & (flat < side * side), flat, side * side).to(tl.int32)
    else:
        inside = (dy >= -reach) & (dy <= reach) & (dx >= -reach) & (dx <= reach)
        rel = tl.where(inside, (dy + reach) * side + (dx + reach), side * side)
    return rel
