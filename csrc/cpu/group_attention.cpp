// group_attention (CRA's second attention block) on the CPU: group i's center query q0[i]
// attends over the group's own keys/values k/v[i, 0..K] with bias table[rel(center, member)].
// at::parallel_for over groups; scores, softmax and weighted sums use small per-task buffers
// allocated once per task (fp32 accumulation, fp64 for fp64), with no gathered copies or bias
// tensor. Gradients of q0/k/v are each group's own rows; the bias-table gradient is summed per
// fixed block of groups, then over blocks in index order, so it is the same bits whatever the
// thread count or scheduling.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "relative_position.h"

namespace fastmatte {
namespace {

// Groups per bias-table partial sum: fixed, so the table gradient's summation order is too.
constexpr int64_t kGroupsPerBlock = 64;

struct GroupShape {
  int64_t groups, members, heads, dim, table;
};

void check_same_sizes(const at::Tensor& t, at::IntArrayRef want, const char* op, const char* name,
                      const char* layout) {
  TORCH_CHECK(t.sizes() == want, "fastmatte.", op, ": ", name, " must be ", layout, " = ", want,
              ", got ", t.sizes());
}

void check_like_q0(const at::Tensor& t, const at::Tensor& q0, const char* op, const char* name) {
  check_dtype(t, q0.scalar_type(), op, name);
  check_same_device(t, q0, op, name, "q0");
  check_contiguous(t, op, name);
}

GroupShape check_group_attention(const char* op, const at::Tensor& q0, const at::Tensor& k,
                                 const at::Tensor& v, const at::Tensor& tiles,
                                 const at::Tensor& nbr, const at::Tensor& bias_table,
                                 int64_t search_range) {
  check_int_range(search_range, 1, kMaxTableRange, op, "search_range");
  check_rank(q0, op, "q0", 3, "[N, heads, D]");
  check_floating(q0, op, "q0");
  check_contiguous(q0, op, "q0");
  const int64_t n = q0.size(0), heads = q0.size(1), dim = q0.size(2);
  TORCH_CHECK(dim >= 1, "fastmatte.", op, ": q0 must be [N, heads, D] with D >= 1, got ", q0.sizes());

  check_rank(nbr, op, "nbr", 2, "[N, K]");
  check_dtype(nbr, at::kInt, op, "nbr");
  check_same_device(nbr, q0, op, "nbr", "q0");
  check_contiguous(nbr, op, "nbr");
  TORCH_CHECK(nbr.size(0) == n, "fastmatte.", op, ": nbr must be [N, K] with N = q0.size(0) = ", n,
              ", got ", nbr.sizes());
  const int64_t members = nbr.size(1) + 1;

  check_rank(tiles, op, "tiles", 2, "[N, 3]");
  check_dtype(tiles, at::kInt, op, "tiles");
  check_same_device(tiles, q0, op, "tiles", "q0");
  check_contiguous(tiles, op, "tiles");
  check_same_sizes(tiles, {n, 3}, op, "tiles", "[N, 3] (b, ty, tx)");

  const char* group_layout = "[N, K+1, heads, D] (K = nbr.size(1))";
  check_rank(k, op, "k", 4, group_layout);
  check_same_sizes(k, {n, members, heads, dim}, op, "k", group_layout);
  check_like_q0(k, q0, op, "k");
  check_rank(v, op, "v", 4, group_layout);
  check_same_sizes(v, {n, members, heads, dim}, op, "v", group_layout);
  check_like_q0(v, q0, op, "v");

  const int64_t table = bias_table_size(search_range);
  TORCH_CHECK(bias_table.dim() == 2 && bias_table.size(0) == table && bias_table.size(1) == heads,
              "fastmatte.", op, ": bias_table must be [(2*search_range-1)^2+1, heads] = [", table,
              ", ", heads, "] for search_range=", search_range, ", got ", bias_table.sizes());
  check_like_q0(bias_table, q0, op, "bias_table");

  if (q0.device().is_cpu()) {
    const int32_t* idx = nbr.data_ptr<int32_t>();
    for (int64_t e = 0; e < nbr.numel(); ++e)
      TORCH_CHECK(idx[e] >= -1 && idx[e] < n, "fastmatte.", op, ": nbr entries must be in [-1, N=",
                  n, "), got nbr[", e / nbr.size(1), ", ", e % nbr.size(1), "] = ", idx[e]);
  }
  return {n, members, heads, dim, table};
}

// The members of group i: validity and bias-table entry of each (member 0 is the center).
// Only called for a valid center; a member is valid when its index is >= 0.
void group_members(int64_t i, const int32_t* tiles, const int32_t* nbr, int64_t members,
                   int64_t search_range, Bucketing bucketing, int64_t* rel, uint8_t* valid) {
  const int64_t cy = tiles[3 * i + 1], cx = tiles[3 * i + 2];
  for (int64_t b = 0; b < members; ++b) {
    const int64_t row = b == 0 ? i : nbr[i * (members - 1) + b - 1];
    valid[b] = row >= 0;
    rel[b] = valid[b] ? relative_position_index(cy, cx, tiles[3 * row + 1], tiles[3 * row + 2],
                                                search_range, bucketing)
                      : 0;
  }
}

// The group's rows as acc_t: the data itself for fp32/fp64, else converted into `buffer`.
template <typename scalar_t, typename acc_t>
const acc_t* as_acc(const scalar_t* src, int64_t n, std::vector<acc_t>& buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return src;
  } else {
    for (int64_t e = 0; e < n; ++e) buffer[e] = static_cast<acc_t>(src[e]);
    return buffer.data();
  }
}

// Dot product with 8 independent lanes, so the compiler vectorizes it without reassociating.
template <typename acc_t>
inline __attribute__((always_inline)) acc_t dot(const acc_t* a, const acc_t* b, int64_t n) {
  acc_t lane[8] = {};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int j = 0; j < 8; ++j) lane[j] += a[d + j] * b[d + j];
  for (; d < n; ++d) lane[0] += a[d] * b[d];
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// y += a * x over n elements (restrict: lets the compiler vectorize without alias checks).
template <typename acc_t>
inline __attribute__((always_inline)) void axpy(acc_t a, const acc_t* __restrict__ x,
                                                acc_t* __restrict__ y, int64_t n) {
  for (int64_t d = 0; d < n; ++d) y[d] += a * x[d];
}

// y = a * x over n elements, rounded to y's type.
template <typename acc_t, typename scalar_t>
inline __attribute__((always_inline)) void scale_into(acc_t a, const acc_t* __restrict__ x,
                                                      scalar_t* __restrict__ y, int64_t n) {
  for (int64_t d = 0; d < n; ++d) y[d] = static_cast<scalar_t>(a * x[d]);
}

// Per-task scratch: the group's converted rows, its members, one head's softmax and output row.
template <typename acc_t>
struct Scratch {
  std::vector<acc_t> q, k, v, g, p, row;
  std::vector<int64_t> rel;
  std::vector<uint8_t> valid;
  explicit Scratch(const GroupShape& s)
      : q(s.heads * s.dim), k(s.members * s.heads * s.dim), v(s.members * s.heads * s.dim),
        g(s.heads * s.dim), p(s.members), row(s.dim), rel(s.members), valid(s.members) {}
};

// Softmax weights p[b] of head h (zero for invalid members; they sum to 1).
template <typename acc_t>
void attention_weights(const acc_t* q, const acc_t* k, const acc_t* table, const int64_t* rel,
                       const uint8_t* valid, int64_t h, const GroupShape& s, acc_t* p) {
  const acc_t sqrt_dim = std::sqrt(static_cast<acc_t>(s.dim));
  acc_t top = -std::numeric_limits<acc_t>::infinity();
  for (int64_t b = 0; b < s.members; ++b) {
    if (!valid[b]) continue;
    p[b] = dot(q + h * s.dim, k + (b * s.heads + h) * s.dim, s.dim) / sqrt_dim +
           table[rel[b] * s.heads + h];
    top = std::max(top, p[b]);
  }
  acc_t total = 0;
  for (int64_t b = 0; b < s.members; ++b) {
    p[b] = valid[b] ? std::exp(p[b] - top) : acc_t(0);
    total += p[b];
  }
  for (int64_t b = 0; b < s.members; ++b) p[b] /= total;
}

template <typename scalar_t>
void forward_kernel(const scalar_t* q0, const scalar_t* k, const scalar_t* v, const int32_t* tiles,
                    const int32_t* nbr, const scalar_t* bias_table, const GroupShape& s,
                    int64_t search_range, Bucketing bucketing, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t hd = s.heads * s.dim, group = s.members * hd;
  std::vector<acc_t> table_buffer(s.table * s.heads);
  const acc_t* table = as_acc(bias_table, s.table * s.heads, table_buffer);
  at::parallel_for(0, s.groups, 16, [&](int64_t begin, int64_t end) {
    Scratch<acc_t> w(s);
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* dst = out + i * hd;
      if (tiles[3 * i] < 0) {
        std::fill(dst, dst + hd, scalar_t(0));
        continue;
      }
      group_members(i, tiles, nbr, s.members, search_range, bucketing, w.rel.data(),
                    w.valid.data());
      const acc_t* qi = as_acc(q0 + i * hd, hd, w.q);
      const acc_t* ki = as_acc(k + i * group, group, w.k);
      const acc_t* vi = as_acc(v + i * group, group, w.v);
      for (int64_t h = 0; h < s.heads; ++h) {
        attention_weights(qi, ki, table, w.rel.data(), w.valid.data(), h, s, w.p.data());
        std::fill(w.row.begin(), w.row.end(), acc_t(0));
        for (int64_t b = 0; b < s.members; ++b) {
          if (!w.valid[b]) continue;
          axpy(w.p[b], vi + (b * s.heads + h) * s.dim, w.row.data(), s.dim);
        }
        for (int64_t d = 0; d < s.dim; ++d) dst[h * s.dim + d] = static_cast<scalar_t>(w.row[d]);
      }
    }
  });
}

// grad_table_blocks: [ceil(N / kGroupsPerBlock), table * heads] acc_t zeros, one per block.
template <typename scalar_t>
void backward_kernel(const scalar_t* grad_out, const scalar_t* q0, const scalar_t* k,
                     const scalar_t* v, const int32_t* tiles, const int32_t* nbr,
                     const scalar_t* bias_table, const GroupShape& s, int64_t search_range,
                     Bucketing bucketing, scalar_t* grad_q0, scalar_t* grad_k, scalar_t* grad_v,
                     at::opmath_type<scalar_t>* grad_table_blocks) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t hd = s.heads * s.dim, group = s.members * hd;
  const int64_t blocks = (s.groups + kGroupsPerBlock - 1) / kGroupsPerBlock;
  std::vector<acc_t> table_buffer(s.table * s.heads);
  const acc_t* table = as_acc(bias_table, s.table * s.heads, table_buffer);
  const acc_t sqrt_dim = std::sqrt(static_cast<acc_t>(s.dim));
  at::parallel_for(0, blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    Scratch<acc_t> w(s);
    std::vector<acc_t> dp(s.members);
    for (int64_t block = block_begin; block < block_end; ++block) {
      acc_t* grad_table = grad_table_blocks + block * s.table * s.heads;
      const int64_t end = std::min(s.groups, (block + 1) * kGroupsPerBlock);
      for (int64_t i = block * kGroupsPerBlock; i < end; ++i) {
        scalar_t *gq = grad_q0 + i * hd, *gk = grad_k + i * group, *gv = grad_v + i * group;
        if (tiles[3 * i] < 0) {
          std::fill(gq, gq + hd, scalar_t(0));
          std::fill(gk, gk + group, scalar_t(0));
          std::fill(gv, gv + group, scalar_t(0));
          continue;
        }
        group_members(i, tiles, nbr, s.members, search_range, bucketing, w.rel.data(),
                      w.valid.data());
        const acc_t* qi = as_acc(q0 + i * hd, hd, w.q);
        const acc_t* ki = as_acc(k + i * group, group, w.k);
        const acc_t* vi = as_acc(v + i * group, group, w.v);
        const acc_t* gi = as_acc(grad_out + i * hd, hd, w.g);
        for (int64_t h = 0; h < s.heads; ++h) {
          attention_weights(qi, ki, table, w.rel.data(), w.valid.data(), h, s, w.p.data());
          const acc_t* g = gi + h * s.dim;
          // d(loss)/d(score_b) = p_b (g.v_b - sum_c p_c g.v_c): the softmax Jacobian.
          acc_t expected = 0;
          for (int64_t b = 0; b < s.members; ++b) {
            dp[b] = w.valid[b] ? dot(g, vi + (b * s.heads + h) * s.dim, s.dim) : acc_t(0);
            expected += w.p[b] * dp[b];
          }
          std::fill(w.row.begin(), w.row.end(), acc_t(0));
          const acc_t* qh = qi + h * s.dim;
          for (int64_t b = 0; b < s.members; ++b) {
            const int64_t offset = (b * s.heads + h) * s.dim;
            if (!w.valid[b]) {
              std::fill(gk + offset, gk + offset + s.dim, scalar_t(0));
              std::fill(gv + offset, gv + offset + s.dim, scalar_t(0));
              continue;
            }
            const acc_t pb = w.p[b], ds = pb * (dp[b] - expected), dscore = ds / sqrt_dim;
            scale_into(pb, g, gv + offset, s.dim);
            scale_into(dscore, qh, gk + offset, s.dim);
            axpy(dscore, ki + offset, w.row.data(), s.dim);
            grad_table[w.rel[b] * s.heads + h] += ds;
          }
          for (int64_t d = 0; d < s.dim; ++d) gq[h * s.dim + d] = static_cast<scalar_t>(w.row[d]);
        }
      }
    }
  });
}

at::Tensor group_attention_cpu(const at::Tensor& q0, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& tiles, const at::Tensor& nbr,
                               const at::Tensor& bias_table, int64_t search_range,
                               c10::string_view bucketing) {
  const char* op = "group_attention";
  const GroupShape s = check_group_attention(op, q0, k, v, tiles, nbr, bias_table, search_range);
  const Bucketing mode = parse_bucketing(bucketing, op);
  at::Tensor out = at::empty_like(q0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(), "group_attention_cpu", [&] {
    forward_kernel(q0.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                   tiles.data_ptr<int32_t>(), nbr.data_ptr<int32_t>(),
                   bias_table.data_ptr<scalar_t>(), s, search_range, mode, out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_attention_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& q0, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& tiles, const at::Tensor& nbr, const at::Tensor& bias_table,
    int64_t search_range, c10::string_view bucketing) {
  const char* op = "group_attention_backward";
  const GroupShape s = check_group_attention(op, q0, k, v, tiles, nbr, bias_table, search_range);
  const Bucketing mode = parse_bucketing(bucketing, op);
  check_same_sizes(grad_out, q0.sizes(), op, "grad_out", "q0's shape [N, heads, D]");
  check_like_q0(grad_out, q0, op, "grad_out");
  at::Tensor grad_q0 = at::empty_like(q0), grad_k = at::empty_like(k), grad_v = at::empty_like(v);
  const auto dtype = q0.scalar_type();
  const int64_t blocks = (s.groups + kGroupsPerBlock - 1) / kGroupsPerBlock;
  at::Tensor table_blocks =
      at::zeros({blocks, s.table, s.heads}, q0.options().dtype(at::toOpMathType(dtype)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "group_attention_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_kernel(grad_out.data_ptr<scalar_t>(), q0.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                    v.data_ptr<scalar_t>(), tiles.data_ptr<int32_t>(), nbr.data_ptr<int32_t>(),
                    bias_table.data_ptr<scalar_t>(), s, search_range, mode,
                    grad_q0.data_ptr<scalar_t>(), grad_k.data_ptr<scalar_t>(),
                    grad_v.data_ptr<scalar_t>(), table_blocks.data_ptr<acc_t>());
    // Blocks are added in index order (at::sum's order could depend on the thread count).
    const int64_t entries = s.table * s.heads;
    acc_t* total = table_blocks.data_ptr<acc_t>();
    for (int64_t block = 1; block < blocks; ++block)
      for (int64_t e = 0; e < entries; ++e) total[e] += total[block * entries + e];
  });
  at::Tensor grad_table = blocks > 0 ? table_blocks[0] : table_blocks.new_zeros({s.table, s.heads});
  return {grad_q0, grad_k, grad_v, grad_table.to(dtype, /*non_blocking=*/false, /*copy=*/true)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) {
  m.impl("group_attention", &group_attention_cpu);
  m.impl("group_attention_backward", &group_attention_backward_cpu);
}

}  // namespace fastmatte
