// Stand-in for a header that only CUDA builds of torch ship; lets tools/nvcc_check.sh compile
// the CUDA sources against a CPU-only torch. Never used by a real build.
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
