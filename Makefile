# mft developer entry points. Everything installs into .venv at the repo root.
#   make demo   set up, then tokenize -> preprocess -> pre-train -> generate on the bundled corpus (CPU)
#   make test   set up, then cargo tests, C++ kernel tests and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed
DEMO   := runs/demo

.PHONY: setup native demo test test-rust test-cpp test-python test-browser test-tmux bench clean

setup: native

$(DEPS): requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Builds mft._native (Rust, maturin) and mft._kernels (C++, CMake via build.rs) in place.
native: $(DEPS)
	$(BIN)/pip install --quiet --no-build-isolation --no-deps -e .
	$(BIN)/python -c "import mft._native, mft._kernels"

demo: setup
	rm -rf $(DEMO)
	mkdir -p $(DEMO)/data
	$(BIN)/mft tokenizer train --input data/kjv/kjv.jsonl --vocab-size 4096 --output $(DEMO)/tokenizer.json
	$(BIN)/mft data preprocess --input data/kjv/kjv.jsonl --tokenizer $(DEMO)/tokenizer.json --output-prefix $(DEMO)/data/kjv
	$(BIN)/mft train configs/tiny/demo.yaml
	$(BIN)/mft generate --model $(DEMO)/train --prompt "In the beginning" --max-new-tokens 48 --temperature 0.7 --top-p 0.9 --seed 1
	$(BIN)/mft generate --model $(DEMO)/train --prompt "And the LORD said unto Moses" --max-new-tokens 48 --temperature 0.8 --top-p 0.9 --seed 7

test: setup test-rust test-cpp test-python

test-rust:
	cargo test --quiet -p mft-core

# C++ kernel unit tests (csrc/tests), built in their own tree with MFT_BUILD_TESTS=ON.
test-cpp: native
	$(BIN)/cmake -S . -B build/cpp -DCMAKE_BUILD_TYPE=Release -DMFT_BUILD_TESTS=ON \
	    -Dpybind11_DIR=$$($(BIN)/python -m pybind11 --cmakedir) \
	    -DPython_EXECUTABLE=$(abspath $(BIN))/python -DMFT_KERNEL_OUTPUT_DIR=$(abspath build/cpp/python) > /dev/null
	$(BIN)/cmake --build build/cpp --parallel 2 > /dev/null
	$(BIN)/ctest --test-dir build/cpp --output-on-failure

test-python: native test-browser test-tmux
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=25  # 2 workers, one file per worker at a time (module fixtures built once); the slowest 25 listed for the CI budget

# Headless Chromium renders `mft report` pages in tests/python/test_report.py (Debian package).
# Installed only when missing, as root with apt-get (CI); otherwise that one test skips, saying why.
test-browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the report screenshot test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        -o DPkg::Lock::Timeout=300 chromium fonts-liberation) > /dev/null \
	    || echo "warning: could not install chromium; the report screenshot test will skip"; \
	else echo "note: chromium missing (needs root + apt-get to install); the report screenshot test will skip"; fi

# tmux drives `mft chat` as a person would in tests/python/test_chat_cli.py (Debian package).
# Installed only when missing, as root with apt-get (CI); otherwise that test skips, saying why.
test-tmux:
	@command -v tmux >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing tmux (apt-get) for the mft chat terminal test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        -o DPkg::Lock::Timeout=300 tmux) > /dev/null \
	    || echo "warning: could not install tmux; the mft chat terminal test will skip"; \
	else echo "note: tmux missing (needs root + apt-get to install); the mft chat terminal test will skip"; fi

bench: setup
	$(BIN)/python benches/train_step.py

clean:
	rm -rf build target runs
