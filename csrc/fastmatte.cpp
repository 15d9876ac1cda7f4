// Every torch.ops.fastmatte schema, in one place. Kernels live in cpu/<op>.cpp and
// cuda/<op>.cu; fake kernels, autograd and the Python API in fastmatte/ops/<op>.py.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(fastmatte, m) {
  // Tile selection, gather and scatter (coarse-to-fine refinement of uncertain tiles).
  m.def("select_tiles(Tensor trimap, int capacity, int unknown_class=1)"
        " -> (Tensor tiles, Tensor count, Tensor tile_map, Tensor candidates)");
  m.def("gather_tiles(Tensor image, Tensor coarse, Tensor tiles, Tensor count,"
        " int tile=8, int halo=0) -> Tensor");
  m.def("gather_tiles_backward(Tensor grad_patches, Tensor tiles, Tensor count,"
        " SymInt[] image_size, SymInt[] coarse_size, int tile, int halo)"
        " -> (Tensor grad_image, Tensor grad_coarse)");
  m.def("scatter_tiles(Tensor coarse_alpha, Tensor refined, Tensor tiles, Tensor count,"
        " Tensor tile_map, str mode=\"bilinear\") -> Tensor");
  m.def("scatter_tiles_backward(Tensor grad_alpha, Tensor coarse_alpha, Tensor refined,"
        " Tensor tiles, Tensor count, Tensor tile_map, str mode)"
        " -> (Tensor grad_coarse_alpha, Tensor grad_refined)");

  // Nearest tiles and cross-region attention (CRA's refinement transformer).
  m.def("knn_tiles(Tensor tiles, Tensor count, int k, Tensor? tile_map=None) -> Tensor");
  m.def("knn_attention(Tensor q, Tensor k, Tensor v, Tensor tiles, Tensor nbr,"
        " Tensor bias_table, int search_range, str bucketing=\"per_axis\") -> Tensor");
  m.def("knn_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor tiles,"
        " Tensor nbr, Tensor bias_table, int search_range, str bucketing)"
        " -> (Tensor grad_q, Tensor grad_k, Tensor grad_v, Tensor grad_bias_table)");
  m.def("group_attention(Tensor q0, Tensor k, Tensor v, Tensor tiles, Tensor nbr,"
        " Tensor bias_table, int search_range, str bucketing=\"per_axis\") -> Tensor");
  m.def("group_attention_backward(Tensor grad_out, Tensor q0, Tensor k, Tensor v, Tensor tiles,"
        " Tensor nbr, Tensor bias_table, int search_range, str bucketing)"
        " -> (Tensor grad_q0, Tensor grad_k, Tensor grad_v, Tensor grad_bias_table)");

  // Swin's shifted-window attention (the backbone of CRAMatting): qkv in, attention out.
  m.def("window_attention(Tensor qkv, Tensor bias_table, int window, int[] window_size,"
        " int[] shift) -> Tensor");

  // PP-Matting's gated convolution (weights with BatchNorms folded in) and semantic-detail fusion.
  m.def("gated_conv(Tensor x, Tensor guide, Tensor w_hidden, Tensor b_hidden, Tensor w_gate,"
        " Tensor b_gate, Tensor w_out) -> Tensor");
  m.def("gated_conv_backward(Tensor grad_out, Tensor x, Tensor guide, Tensor w_hidden,"
        " Tensor b_hidden, Tensor w_gate, Tensor b_gate, Tensor w_out)"
        " -> (Tensor grad_x, Tensor grad_guide, Tensor grad_w_hidden, Tensor grad_b_hidden,"
        " Tensor grad_w_gate, Tensor grad_b_gate, Tensor grad_w_out)");
  m.def("trimap_fusion(Tensor semantic, Tensor detail, int fg_class=0, int unknown_class=1)"
        " -> Tensor");
  m.def("trimap_fusion_backward(Tensor grad_alpha, Tensor semantic, int unknown_class) -> Tensor");

  // The full-resolution end of a deep guided filter (RVM's refiner): coefficients upsampled and
  // applied to the frame in one pass.
  m.def("guided_upsample(Tensor image, Tensor coef_a, Tensor coef_b)"
        " -> (Tensor foreground, Tensor alpha)");
  m.def("guided_upsample_backward(Tensor grad_foreground, Tensor grad_alpha, Tensor image,"
        " Tensor coef_a, Tensor coef_b) -> (Tensor grad_image, Tensor grad_coef_a,"
        " Tensor grad_coef_b)");

  // MODNet's IBNorm in inference, with its ReLU: the first K channels a BatchNorm folded to an
  // affine map, the rest an InstanceNorm (per-sample statistics), then max(y, 0) when relu.
  m.def("ibnorm(Tensor x, Tensor bn_scale, Tensor bn_shift, Tensor in_weight, Tensor in_bias,"
        " float eps=1e-05, bool relu=True) -> Tensor");
  m.def("ibnorm_backward(Tensor grad, Tensor x, Tensor bn_scale, Tensor bn_shift, Tensor in_weight,"
        " Tensor in_bias, float eps, bool relu) -> (Tensor grad_x, Tensor grad_bn_scale,"
        " Tensor grad_bn_shift, Tensor grad_in_weight, Tensor grad_in_bias)");

  // torch.cat of bilinearly resized feature maps (MODNet's skips), written channels-last in one pass.
  m.def("resize_concat(Tensor[] tensors, SymInt[2] size) -> Tensor");
  m.def("resize_concat_backward(Tensor grad, Tensor[] tensors, SymInt[2] size) -> Tensor[]");

  // F.adaptive_avg_pool2d (F.interpolate(mode="area")): MODNet's resize of the photo to the network
  // size and of the matte back; the output is in x's suggested memory format.
  m.def("area_resize(Tensor x, SymInt[2] size) -> Tensor");
  m.def("area_resize_backward(Tensor grad, Tensor x, SymInt[2] size) -> Tensor");

  // Matting metrics (the DIM evaluation code's Grad and Conn): one value per image, already / 1000.
  m.def("gradient_error(Tensor pred, Tensor gt, Tensor? mask=None) -> Tensor");
  m.def("connectivity_error(Tensor pred, Tensor gt, Tensor? mask=None) -> Tensor");
}

// Importing fastmatte._C runs the registrations above; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
