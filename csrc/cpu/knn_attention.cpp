// knn_attention (first CRA block) on the CPU, fused: no gathered tensor and no bias tensor
// exists in memory. q/k/v (and grad_out) are first re-laid out once, heads innermost
// ([rows, D, heads] in the accumulation type, heads padded to a whole SIMD vector), so that a
// group reads its members' rows by index and every inner loop is a SIMD operation over heads.
// A task computes one group's (K+1) x (K+1) scores, softmax and weighted sums at a time.
// Backward recomputes the softmax. A q/k/v row is a member of many groups, so each group writes
// its per-member contributions to a scratch buffer, which is then added up per destination row
// in group order through a reverse index; the table gradient is summed per fixed block of
// groups, then over blocks in order. Nothing depends on the number of threads: the CPU
// backward is deterministic.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/simd.h"
#include "cpu/softmax_exp.h"
#include "relative_position.h"

namespace fastmatte {
namespace {

// 16 bytes of acc_t (4 floats or 2 doubles): one SSE2 or NEON register, so each operation on
// it is one SIMD instruction on any build target.
constexpr int kVecBytes = 16;
template <typename T> using Vec = typename Simd<T, kVecBytes>::vec;
template <typename T> constexpr int64_t kLanes = kVecBytes / sizeof(T);
template <typename T> inline Vec<T> vload(const T* p) { return load_vec<kVecBytes>(p); }

// The two small matrix products of attention, per SIMD chunk c of heads: a block of outputs
// stays in registers while the inner dimension streams by. Blocks have compile-time sizes
// (8, then 4, 2, 1 for the rest) so that the accumulators are registers, not memory.
template <typename F>
inline void in_blocks(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) f(std::integral_constant<int64_t, 8>{}, i);
  if (i + 4 <= n) f(std::integral_constant<int64_t, 4>{}, i), i += 4;
  if (i + 2 <= n) f(std::integral_constant<int64_t, 2>{}, i), i += 2;
  if (i < n) f(std::integral_constant<int64_t, 1>{}, i);
}

// out[b * out_stride + c] = x . rows[b] over D, for b < count (rows: [D, hp] buffers).
template <typename acc_t>
inline void dot_rows(const acc_t* x, const acc_t* const* rows, int64_t count, int64_t dim,
                     int64_t hp, int64_t c, acc_t* out, int64_t out_stride) {
  in_blocks(count, [&](auto block, int64_t b0) {
    constexpr int64_t nb = decltype(block)::value;
    Vec<acc_t> acc[nb] = {};
    for (int64_t d = 0; d < dim; ++d) {
      const Vec<acc_t> xd = vload(x + d * hp + c);
      for (int64_t j = 0; j < nb; ++j) acc[j] += xd * vload(rows[b0 + j] + d * hp + c);
    }
    for (int64_t j = 0; j < nb; ++j) vstore(out + (b0 + j) * out_stride + c, acc[j]);
  });
}

// out[d * hp + c] = scale * sum over y < count of weight[y * weight_stride + c] * rows[y][d * hp + c].
template <typename acc_t>
inline void combine_rows(const acc_t* weight, int64_t weight_stride, const acc_t* const* rows,
                         int64_t count, int64_t dim, int64_t hp, int64_t c, acc_t scale,
                         acc_t* out) {
  in_blocks(dim, [&](auto block, int64_t d0) {
    constexpr int64_t nd = decltype(block)::value;
    Vec<acc_t> acc[nd] = {};
    for (int64_t y = 0; y < count; ++y) {
      const Vec<acc_t> w = vload(weight + y * weight_stride + c);
      const acc_t* r = rows[y] + d0 * hp + c;
      for (int64_t j = 0; j < nd; ++j) acc[j] += w * vload(r + j * hp);
    }
    for (int64_t j = 0; j < nd; ++j) vstore(out + (d0 + j) * hp + c, acc[j] * scale);
  });
}

struct AttentionShape {
  int64_t n, heads, dim, k, members, table_size;
};

void check_like_q(const at::Tensor& t, const at::Tensor& q, const char* op, const char* name) {
  TORCH_CHECK(t.sizes() == q.sizes(), "fastmatte.", op, ": ", name, " must be [N, heads, D] = ",
              q.sizes(), " like q, got ", t.sizes());
  check_dtype(t, q.scalar_type(), op, name);
  check_same_device(t, q, op, name, "q");
  check_contiguous(t, op, name);
}

AttentionShape check_inputs(const char* op, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& tiles, const at::Tensor& nbr,
                            const at::Tensor& bias_table, int64_t search_range) {
  check_rank(q, op, "q", 3, "[N, heads, D]");
  check_floating(q, op, "q");
  check_contiguous(q, op, "q");
  const int64_t n = q.size(0), heads = q.size(1), dim = q.size(2);
  TORCH_CHECK(dim >= 1, "fastmatte.", op, ": q must have D >= 1, got ", q.sizes());
  check_like_q(k, q, op, "k");
  check_like_q(v, q, op, "v");

  TORCH_CHECK(tiles.dim() == 2 && tiles.size(0) == n && tiles.size(1) == 3, "fastmatte.", op,
              ": tiles must be [N=", n, ", 3] (b, ty, tx), got ", tiles.sizes());
  check_dtype(tiles, at::kInt, op, "tiles");
  check_same_device(tiles, q, op, "tiles", "q");
  check_contiguous(tiles, op, "tiles");

  TORCH_CHECK(nbr.dim() == 2 && nbr.size(0) == n, "fastmatte.", op, ": nbr must be [N=", n,
              ", K], got ", nbr.sizes());
  check_dtype(nbr, at::kInt, op, "nbr");
  check_same_device(nbr, q, op, "nbr", "q");
  check_contiguous(nbr, op, "nbr");

  check_int_range(search_range, 1, kMaxTableRange, op, "search_range");
  const int64_t table_size = bias_table_size(search_range);
  TORCH_CHECK(bias_table.dim() == 2 && bias_table.size(0) == table_size &&
                  bias_table.size(1) == heads,
              "fastmatte.", op, ": bias_table must be [(2*search_range-1)^2+1, heads] = [",
              table_size, ", ", heads, "] for search_range=", search_range, ", got ",
              bias_table.sizes());
  check_dtype(bias_table, q.scalar_type(), op, "bias_table");
  check_same_device(bias_table, q, op, "bias_table", "q");
  check_contiguous(bias_table, op, "bias_table");

  const int64_t kk = nbr.size(1);
  check_output_size({n, kk + 1, heads, dim}, q.scalar_type(), op, "out");

  // Cheap on the CPU, and an out-of-range index would read outside q/k/v.
  const int32_t* idx = nbr.data_ptr<int32_t>();
  for (int64_t e = 0; e < n * kk; ++e) {
    TORCH_CHECK(idx[e] >= -1 && idx[e] < n, "fastmatte.", op, ": nbr[", e / kk, ", ", e % kk,
                "] = ", idx[e], " is out of range [-1, ", n, ")");
  }
  return {n, heads, dim, kk, kk + 1, table_size};
}

// One row [heads, D] of scalar_t -> [D, padded heads] of acc_t, zero padded.
template <typename scalar_t, typename acc_t>
inline void transpose_heads(const scalar_t* x, int64_t heads, int64_t dim, int64_t padded_heads,
                            acc_t* y) {
  for (int64_t d = 0; d < dim; ++d)
    for (int64_t h = 0; h < padded_heads; ++h)
      y[d * padded_heads + h] = h < heads ? static_cast<acc_t>(x[h * dim + d]) : acc_t(0);
}

// [rows, heads, D] scalar_t -> [rows, D, padded heads] acc_t.
template <typename scalar_t, typename acc_t>
std::vector<acc_t> heads_inner(const scalar_t* src, int64_t rows, int64_t heads, int64_t dim,
                               int64_t padded_heads) {
  std::vector<acc_t> out(rows * dim * padded_heads);
  at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      transpose_heads(src + r * heads * dim, heads, dim, padded_heads, out.data() + r * dim * padded_heads);
  });
  return out;
}

// The inputs of a pass, heads innermost, and one group's softmax over its valid members.
template <typename acc_t>
struct Attention {
  const AttentionShape& s;
  const int64_t hp, md;  // heads padded to whole vectors; D * hp, one row of q/k/v
  std::vector<acc_t> q, k, v, table;  // [N, D, hp] each; table [table_size, hp]
  acc_t scale;

  template <typename scalar_t>
  Attention(const AttentionShape& shape, const scalar_t* q_in, const scalar_t* k_in,
            const scalar_t* v_in, const scalar_t* table_in)
      : s(shape), hp((shape.heads + kLanes<acc_t> - 1) / kLanes<acc_t> * kLanes<acc_t>),
        md(shape.dim * hp),
        q(heads_inner<scalar_t, acc_t>(q_in, shape.n, shape.heads, shape.dim, hp)),
        k(heads_inner<scalar_t, acc_t>(k_in, shape.n, shape.heads, shape.dim, hp)),
        v(heads_inner<scalar_t, acc_t>(v_in, shape.n, shape.heads, shape.dim, hp)),
        table(heads_inner<scalar_t, acc_t>(table_in, shape.table_size, shape.heads, 1, hp)),
        scale(acc_t(1) / std::sqrt(static_cast<acc_t>(shape.dim))) {}
};

template <typename acc_t>
struct Group {
  using V = Vec<acc_t>;
  static constexpr int64_t L = kLanes<acc_t>;
  const Attention<acc_t>& at;
  const int64_t M, hp, md;
  int64_t count = 0;          // valid members, compacted in group order:
  std::vector<int64_t> slot;  // [M] position in the group (0 = center)
  std::vector<int64_t> row;   // [M] row of q/k/v
  std::vector<const acc_t*> q, k, v;  // [M] that row of at.q, at.k, at.v
  std::vector<int32_t> rel;   // [M * M] bias-table entry of (query a, key b)
  std::vector<acc_t> p;       // [M, M, hp] scores, then probabilities

  explicit Group(const Attention<acc_t>& attention)
      : at(attention), M(attention.s.members), hp(attention.hp), md(attention.md), slot(M),
        row(M), q(M), k(M), v(M), rel(M * M), p(M * M * hp) {}

  acc_t* prob(int64_t a, int64_t b) { return p.data() + (a * M + b) * hp; }

  // Group i's valid members; false if its center is invalid (the group is then empty).
  bool load(int64_t i, const int32_t* tiles, const int32_t* nbr, int64_t search_range,
            Bucketing bucketing) {
    if (tiles[3 * i] < 0) return false;
    count = 0;
    for (int64_t a = 0; a < M; ++a) {
      const int64_t r = a == 0 ? i : nbr[i * (M - 1) + a - 1];
      if (r < 0) continue;
      slot[count] = a;
      row[count] = r;
      q[count] = at.q.data() + r * md;
      k[count] = at.k.data() + r * md;
      v[count++] = at.v.data() + r * md;
    }
    for (int64_t a = 0; a < count; ++a) {
      const int32_t* ta = tiles + 3 * row[a];
      for (int64_t b = 0; b < count; ++b) {
        const int32_t* tb = tiles + 3 * row[b];
        rel[a * M + b] = static_cast<int32_t>(
            relative_position_index(ta[1], ta[2], tb[1], tb[2], search_range, bucketing));
      }
    }
    return true;
  }

  // p[a, b] = softmax over b of q_a . k_b * scale + table[rel(a, b)], per head.
  void softmax() {
    for (int64_t a = 0; a < count; ++a) {
      for (int64_t c = 0; c < hp; c += L) dot_rows(q[a], k.data(), count, at.s.dim, hp, c, prob(a, 0), hp);
      for (int64_t b = 0; b < count; ++b) {
        const acc_t* bias = at.table.data() + rel[a * M + b] * hp;
        for (int64_t c = 0; c < hp; c += L) vstore(prob(a, b) + c, vload(prob(a, b) + c) * at.scale + vload(bias + c));
      }
      for (int64_t c = 0; c < hp; c += L) {
        V top = vload(prob(a, 0) + c), total = {};
        for (int64_t b = 1; b < count; ++b) {
          const V x = vload(prob(a, b) + c);
          top = top < x ? x : top;
        }
        for (int64_t b = 0; b < count; ++b) {
          const V e = softmax_exp(vload(prob(a, b) + c) - top);
          vstore(prob(a, b) + c, e);
          total += e;
        }
        const V inverse = acc_t(1) / total;  // total >= 1: the max term is e^0
        for (int64_t b = 0; b < count; ++b) vstore(prob(a, b) + c, vload(prob(a, b) + c) * inverse);
      }
    }
  }
};

template <typename scalar_t>
void forward_kernel(const AttentionShape& s, const scalar_t* q, const scalar_t* k,
                    const scalar_t* v, const int32_t* tiles, const int32_t* nbr,
                    const scalar_t* table, int64_t search_range, Bucketing bucketing,
                    scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t L = kLanes<acc_t>;
  const Attention<acc_t> attention(s, q, k, v, table);
  const int64_t M = s.members, D = s.dim, H = s.heads, hp = attention.hp;
  at::parallel_for(0, s.n, 16, [&](int64_t begin, int64_t end) {
    Group<acc_t> g(attention);
    std::vector<acc_t> o(D * hp);
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* dst = out + i * M * H * D;
      std::fill(dst, dst + M * H * D, scalar_t(0));
      if (!g.load(i, tiles, nbr, search_range, bucketing)) continue;
      g.softmax();
      for (int64_t a = 0; a < g.count; ++a) {
        for (int64_t c = 0; c < hp; c += L)
          combine_rows(g.prob(a, 0), hp, g.v.data(), g.count, D, hp, c, acc_t(1), o.data());
        scalar_t* y = dst + g.slot[a] * H * D;
        for (int64_t h = 0; h < H; ++h)
          for (int64_t d = 0; d < D; ++d) y[h * D + d] = static_cast<scalar_t>(o[d * hp + h]);
      }
    }
  });
}

// Groups per block of the table-gradient partial sums: a fixed size, so the order of the
// additions (and thus the result) does not depend on the number of threads.
constexpr int64_t kGroupsPerBlock = 16;
// The backward's per-member contributions are made and summed chunk by chunk of groups, so
// that the scratch stays small (cache-friendly, and reused without page faults).
constexpr int64_t kScratchBytes = 16 << 20;

// Backward pass 1 for the groups [first, last) (whole blocks): each group's contributions to
// dq, dk and dv of its valid members (scratch entry (i - first) * M + slot holds
// [dq | dk | dv], each [D, hp]) and to its block's table partial [table_size, hp].
template <typename scalar_t, typename acc_t>
void backward_contributions(const Attention<acc_t>& at, const scalar_t* grad_out,
                            const int32_t* tiles, const int32_t* nbr, int64_t search_range,
                            Bucketing bucketing, int64_t first, int64_t last, acc_t* scratch,
                            acc_t* table_partials) {
  using V = Vec<acc_t>;
  constexpr int64_t L = kLanes<acc_t>;
  const AttentionShape& s = at.s;
  const int64_t M = s.members, D = s.dim, hp = at.hp, md = at.md;
  const int64_t first_block = first / kGroupsPerBlock;
  const int64_t last_block = (last + kGroupsPerBlock - 1) / kGroupsPerBlock;
  at::parallel_for(first_block, last_block, 1, [&](int64_t block_begin, int64_t block_end) {
    Group<acc_t> g(at);
    std::vector<acc_t> ds(M * M * hp), go_rows(M * md);
    std::vector<const acc_t*> go(M);  // grad_out rows of the valid members
    for (int64_t a = 0; a < M; ++a) go[a] = go_rows.data() + a * md;
    auto grad_s = [&](int64_t a, int64_t b) { return ds.data() + (a * M + b) * hp; };
    for (int64_t block = block_begin; block < block_end; ++block) {
      acc_t* dtable = table_partials + block * s.table_size * hp;
      std::fill(dtable, dtable + s.table_size * hp, acc_t(0));
      for (int64_t i = block * kGroupsPerBlock; i < std::min(last, (block + 1) * kGroupsPerBlock); ++i) {
        if (!g.load(i, tiles, nbr, search_range, bucketing)) continue;
        g.softmax();
        for (int64_t a = 0; a < g.count; ++a)
          transpose_heads(grad_out + (i * M + g.slot[a]) * s.heads * D, s.heads, D, hp, go_rows.data() + a * md);
        // dS = P * (dP - sum_b P dP), with dP[a, b] = dO_a . v_b.
        for (int64_t a = 0; a < g.count; ++a) {
          for (int64_t c = 0; c < hp; c += L) dot_rows(go[a], g.v.data(), g.count, D, hp, c, grad_s(a, 0), hp);
          for (int64_t c = 0; c < hp; c += L) {
            V delta = {};
            for (int64_t b = 0; b < g.count; ++b) delta += vload(g.prob(a, b) + c) * vload(grad_s(a, b) + c);
            for (int64_t b = 0; b < g.count; ++b) {
              const V dsab = vload(g.prob(a, b) + c) * (vload(grad_s(a, b) + c) - delta);
              vstore(grad_s(a, b) + c, dsab);
              acc_t* entry = dtable + g.rel[a * M + b] * hp + c;
              vstore(entry, vload(entry) + dsab);
            }
          }
        }
        // dq_x = scale sum_y dS[x, y] k_y,  dk_x = scale sum_y dS[y, x] q_y,  dv_x = sum_y P[y, x] dO_y.
        for (int64_t x = 0; x < g.count; ++x) {
          acc_t* entry = scratch + ((i - first) * M + g.slot[x]) * 3 * md;
          for (int64_t c = 0; c < hp; c += L) {
            combine_rows(grad_s(x, 0), hp, g.k.data(), g.count, D, hp, c, at.scale, entry);
            combine_rows(grad_s(0, x), M * hp, g.q.data(), g.count, D, hp, c, at.scale, entry + md);
            combine_rows(g.prob(0, x), M * hp, go.data(), g.count, D, hp, c, acc_t(1), entry + 2 * md);
          }
        }
      }
    }
  });
}

// For every row j, the contribution entries i * M + slot (group i, member slot) whose member
// is j, in increasing order: entries[offsets[j] .. offsets[j + 1]).
void reverse_index(const AttentionShape& s, const int32_t* tiles, const int32_t* nbr,
                   std::vector<int64_t>& offsets, std::vector<int64_t>& entries) {
  const int64_t M = s.members;
  auto member = [&](int64_t e) -> int64_t {
    const int64_t i = e / M, a = e % M;
    if (tiles[3 * i] < 0) return -1;
    return a == 0 ? i : nbr[i * s.k + a - 1];
  };
  offsets.assign(s.n + 1, 0);
  for (int64_t e = 0; e < s.n * M; ++e) {
    const int64_t j = member(e);
    if (j >= 0) ++offsets[j + 1];
  }
  for (int64_t j = 0; j < s.n; ++j) offsets[j + 1] += offsets[j];
  entries.resize(offsets[s.n]);
  std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
  for (int64_t e = 0; e < s.n * M; ++e) {
    const int64_t j = member(e);
    if (j >= 0) entries[cursor[j]++] = e;
  }
}

template <typename scalar_t>
void backward_kernel(const AttentionShape& s, const scalar_t* grad_out, const scalar_t* q,
                     const scalar_t* k, const scalar_t* v, const int32_t* tiles,
                     const int32_t* nbr, const scalar_t* table, int64_t search_range,
                     Bucketing bucketing, scalar_t* grad_q, scalar_t* grad_k, scalar_t* grad_v,
                     scalar_t* grad_table) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t L = kLanes<acc_t>;
  const Attention<acc_t> attention(s, q, k, v, table);
  const int64_t M = s.members, D = s.dim, H = s.heads, hp = attention.hp, md = attention.md;
  const int64_t entry = 3 * md, blocks = (s.n + kGroupsPerBlock - 1) / kGroupsPerBlock;
  const int64_t chunk = std::max<int64_t>(
      1, kScratchBytes / (kGroupsPerBlock * M * entry * static_cast<int64_t>(sizeof(acc_t)))) * kGroupsPerBlock;
  // Uninitialized: pass 1 writes every entry of a valid member, the only ones read back.
  std::unique_ptr<acc_t[]> scratch(new acc_t[std::min(chunk, s.n) * M * entry]);
  std::vector<acc_t> sums(s.n * entry, acc_t(0));  // [N, dq | dk | dv] in [D, hp] layout
  std::vector<acc_t> table_partials(blocks * s.table_size * hp);
  std::vector<int64_t> offsets, entries;
  reverse_index(s, tiles, nbr, offsets, entries);
  std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);  // first entry not yet added
  for (int64_t first = 0; first < s.n; first += chunk) {
    const int64_t last = std::min(s.n, first + chunk);
    backward_contributions(attention, grad_out, tiles, nbr, search_range, bucketing, first, last,
                           scratch.get(), table_partials.data());
    // Each row adds its entries of this chunk in increasing order, after those of earlier chunks.
    at::parallel_for(0, s.n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        acc_t* sum = sums.data() + j * entry;
        for (; next[j] < offsets[j + 1] && entries[next[j]] < last * M; ++next[j]) {
          const acc_t* src = scratch.get() + (entries[next[j]] - first * M) * entry;
          for (int64_t c = 0; c < entry; c += L) vstore(sum + c, vload(sum + c) + vload(src + c));
        }
      }
    });
  }
  at::parallel_for(0, s.n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const acc_t* sum = sums.data() + j * entry;
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t d = 0; d < D; ++d) {
          const int64_t out = j * H * D + h * D + d;
          grad_q[out] = static_cast<scalar_t>(sum[d * hp + h]);
          grad_k[out] = static_cast<scalar_t>(sum[md + d * hp + h]);
          grad_v[out] = static_cast<scalar_t>(sum[2 * md + d * hp + h]);
        }
      }
    }
  });
  for (int64_t t = 0; t < s.table_size; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      acc_t sum = 0;
      for (int64_t block = 0; block < blocks; ++block)
        sum += table_partials[(block * s.table_size + t) * hp + h];
      grad_table[t * H + h] = static_cast<scalar_t>(sum);
    }
  }
}

at::Tensor knn_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& tiles, const at::Tensor& nbr,
                             const at::Tensor& bias_table, int64_t search_range,
                             c10::string_view bucketing) {
  const char* op = "knn_attention";
  const AttentionShape s = check_inputs(op, q, k, v, tiles, nbr, bias_table, search_range);
  const Bucketing mode = parse_bucketing(bucketing, op);
  at::Tensor out = at::empty({s.n, s.members, s.heads, s.dim}, q.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "knn_attention_cpu", [&] {
    forward_kernel(s, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                   tiles.data_ptr<int32_t>(), nbr.data_ptr<int32_t>(),
                   bias_table.data_ptr<scalar_t>(), search_range, mode, out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> knn_attention_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& tiles, const at::Tensor& nbr, const at::Tensor& bias_table,
    int64_t search_range, c10::string_view bucketing) {
  const char* op = "knn_attention_backward";
  const AttentionShape s = check_inputs(op, q, k, v, tiles, nbr, bias_table, search_range);
  const Bucketing mode = parse_bucketing(bucketing, op);
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == s.n && grad_out.size(1) == s.members &&
                  grad_out.size(2) == s.heads && grad_out.size(3) == s.dim,
              "fastmatte.", op, ": grad_out must be [N=", s.n, ", K+1=", s.members, ", heads=",
              s.heads, ", D=", s.dim, "], got ", grad_out.sizes());
  check_dtype(grad_out, q.scalar_type(), op, "grad_out");
  check_same_device(grad_out, q, op, "grad_out", "q");
  check_contiguous(grad_out, op, "grad_out");
  at::Tensor grad_q = at::empty_like(q), grad_k = at::empty_like(k), grad_v = at::empty_like(v);
  at::Tensor grad_table = at::empty_like(bias_table);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "knn_attention_backward_cpu", [&] {
    backward_kernel(s, grad_out.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(),
                    k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), tiles.data_ptr<int32_t>(),
                    nbr.data_ptr<int32_t>(), bias_table.data_ptr<scalar_t>(), search_range, mode,
                    grad_q.data_ptr<scalar_t>(), grad_k.data_ptr<scalar_t>(),
                    grad_v.data_ptr<scalar_t>(), grad_table.data_ptr<scalar_t>());
  });
  return {grad_q, grad_k, grad_v, grad_table};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) {
  m.impl("knn_attention", &knn_attention_cpu);
  m.impl("knn_attention_backward", &knn_attention_backward_cpu);
}

}  // namespace fastmatte
