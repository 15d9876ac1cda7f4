// gather_tiles on CUDA: one thread per output element, count read from device memory (no host
// sync). Backward: one thread per gradient element, atomically added into zeroed fp32/fp64
// buffers (so not deterministic; the CPU kernel is).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "gather_tiles.h"

namespace fastmatte {
namespace {

constexpr int kThreads = 256;

// Output element i of [capacity, C + Cc, size, size] -> its row, channel and window pixel.
struct PatchIndex {
  int64_t r, c, py, px;
};

__device__ __forceinline__ PatchIndex patch_index(int64_t i, const GatherGeometry& g) {
  const int64_t px = i % g.size;
  i /= g.size;
  const int64_t py = i % g.size;
  i /= g.size;
  const int64_t channels = g.image_channels + g.coarse_channels;
  return {i / channels, i % channels, py, px};
}

// Selection values are not validated on the GPU (that needs a host sync); clamping b, like
// replicate padding clamps y and x, keeps a bad row inside the tensors' memory.
__device__ __forceinline__ int64_t tile_batch(const int32_t* tiles, int64_t r,
                                              const GatherGeometry& g) {
  const int64_t b = tiles[3 * r];
  return b < 0 ? 0 : (b >= g.batch ? g.batch - 1 : b);
}

template <typename scalar_t>
__global__ void gather_tiles_forward_kernel(const scalar_t* __restrict__ image,
                                            const scalar_t* __restrict__ coarse,
                                            const int32_t* __restrict__ tiles,
                                            const int32_t* __restrict__ count,
                                            scalar_t* __restrict__ out, GatherGeometry g,
                                            int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const PatchIndex p = patch_index(i, g);
  if (p.r >= *count) {
    out[i] = scalar_t(0);
    return;
  }
  const int64_t b = tile_batch(tiles, p.r, g);
  const int64_t y = window_pixel(tiles[3 * p.r + 1], p.py, g, g.height);
  const int64_t x = window_pixel(tiles[3 * p.r + 2], p.px, g, g.width);
  if (p.c < g.image_channels) {
    out[i] = image[((b * g.image_channels + p.c) * g.height + y) * g.width + x];
    return;
  }
  const scalar_t* plane =
      coarse + (b * g.coarse_channels + p.c - g.image_channels) * g.grid_h * g.grid_w;
  out[i] = static_cast<scalar_t>(bilinear_at<acc_t>(plane, g.grid_w,
                                                     bilinear_tap<acc_t>(y, g.grid_h, g.height),
                                                     bilinear_tap<acc_t>(x, g.grid_w, g.width)));
}

template <typename scalar_t, typename acc_t>
__global__ void gather_tiles_backward_kernel(const scalar_t* __restrict__ grad,
                                             const int32_t* __restrict__ tiles,
                                             const int32_t* __restrict__ count,
                                             acc_t* __restrict__ grad_image,
                                             acc_t* __restrict__ grad_coarse, GatherGeometry g,
                                             int64_t total) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const PatchIndex p = patch_index(i, g);
  if (p.r >= *count) return;  // those rows are zeros in the forward: no gradient
  const int64_t b = tile_batch(tiles, p.r, g);
  const int64_t y = window_pixel(tiles[3 * p.r + 1], p.py, g, g.height);
  const int64_t x = window_pixel(tiles[3 * p.r + 2], p.px, g, g.width);
  const acc_t v = static_cast<acc_t>(grad[i]);
  if (p.c < g.image_channels) {
    gpuAtomicAdd(grad_image + ((b * g.image_channels + p.c) * g.height + y) * g.width + x, v);
    return;
  }
  // The adjoint of bilinear upsampling: the pixel's gradient goes to its 4 taps.
  acc_t* plane = grad_coarse + (b * g.coarse_channels + p.c - g.image_channels) * g.grid_h * g.grid_w;
  const BilinearTap<acc_t> ty = bilinear_tap<acc_t>(y, g.grid_h, g.height);
  const BilinearTap<acc_t> tx = bilinear_tap<acc_t>(x, g.grid_w, g.width);
  const acc_t ly = ty.lambda1, lx = tx.lambda1;
  gpuAtomicAdd(plane + ty.i0 * g.grid_w + tx.i0, (acc_t(1) - ly) * (acc_t(1) - lx) * v);
  gpuAtomicAdd(plane + ty.i0 * g.grid_w + tx.i1, (acc_t(1) - ly) * lx * v);
  gpuAtomicAdd(plane + ty.i1 * g.grid_w + tx.i0, ly * (acc_t(1) - lx) * v);
  gpuAtomicAdd(plane + ty.i1 * g.grid_w + tx.i1, ly * lx * v);
}

int64_t blocks_for(int64_t total) { return (total + kThreads - 1) / kThreads; }

at::Tensor gather_tiles_cuda(const at::Tensor& image, const at::Tensor& coarse,
                             const at::Tensor& tiles, const at::Tensor& count, int64_t tile,
                             int64_t halo) {
  const GatherGeometry g = check_gather_forward(image, coarse, tiles, count, tile, halo);
  const c10::cuda::CUDAGuard guard(image.device());
  at::Tensor out = at::empty({tiles.size(0), g.image_channels + g.coarse_channels, g.size, g.size},
                             image.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "gather_tiles_cuda", [&] {
    gather_tiles_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        image.data_ptr<scalar_t>(), coarse.data_ptr<scalar_t>(), tiles.data_ptr<int32_t>(),
        count.data_ptr<int32_t>(), out.data_ptr<scalar_t>(), g, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gather_tiles_backward_cuda(
    const at::Tensor& grad_patches, const at::Tensor& tiles, const at::Tensor& count,
    at::IntArrayRef image_size, at::IntArrayRef coarse_size, int64_t tile, int64_t halo) {
  const GatherGeometry g =
      check_gather_backward(grad_patches, tiles, count, image_size, coarse_size, tile, halo);
  at::globalContext().alertNotDeterministic("fastmatte.gather_tiles_backward (CUDA)");
  const c10::cuda::CUDAGuard guard(grad_patches.device());
  const auto dtype = grad_patches.scalar_type();
  // Half types accumulate in fp32: many windows (halo, replicated borders, 4 taps) hit one cell.
  const auto acc_options = grad_patches.options().dtype(at::toOpMathType(dtype));
  at::Tensor grad_image = at::zeros(image_size, acc_options);
  at::Tensor grad_coarse = at::zeros(coarse_size, acc_options);
  const int64_t total = grad_patches.numel();
  if (total > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gather_tiles_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      gather_tiles_backward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
          grad_patches.data_ptr<scalar_t>(), tiles.data_ptr<int32_t>(), count.data_ptr<int32_t>(),
          grad_image.data_ptr<acc_t>(), grad_coarse.data_ptr<acc_t>(), g, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_image.to(dtype), grad_coarse.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CUDA, m) {
  m.impl("gather_tiles", &gather_tiles_cuda);
  m.impl("gather_tiles_backward", &gather_tiles_backward_cuda);
}

}  // namespace fastmatte
