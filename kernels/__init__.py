"""Triton kernels of fastmatte, installed as the subpackage fastmatte.kernels.

Import these modules lazily (from the op that launches them): importing one defines its
triton.jit kernels, and TRITON_INTERPRET must already be set if it is wanted.
"""
