import os

import torch

# Triton kernels run on CPU tensors through the interpreter when there is no GPU. This must be
# set before triton.jit runs and before fastmatte decides which backends exist (at import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
