# The README's quick start: `make demo` and `make test` on a fresh machine (Python 3.11, no GPU).
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: setup demo test bench nvcc-check

# Installs the local CPU torch only where no torch is importable (never replaces a CUDA torch),
# then builds fastmatte._C against it.
setup:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PYTHON) -c "import triton" 2>/dev/null || $(PIP) install triton==3.7.1
	$(PIP) install --no-build-isolation -e '.[test]'

demo: setup
	$(PYTHON) -m fastmatte info
	$(PYTHON) -m fastmatte bench --res hd

test: setup
	$(PYTHON) -m pytest tests

bench: setup
	$(PYTHON) -m pytest bench

# Compiles every CUDA source against torch's headers (no GPU needed; about a minute each).
nvcc-check:
	tools/nvcc_check.sh
