# Developer tasks; run inside the project's virtualenv (see README).
PY ?= python
# The Rust test binary links libtorch from the installed torch wheel.
TORCH_LIB := $(shell $(PY) -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))" 2>/dev/null)

.PHONY: build-dev format lint test test-python test-rust bench gpu-check wheels test-wheels

build-dev:  ## compile the extension into the venv in place
	maturin develop --release

format:
	cargo fmt
	ruff format python tests bench

lint:
	cargo fmt --check
	cargo clippy --release --features python -- -D warnings
	cargo clippy --release --all-targets -- -D warnings
	ruff check python tests bench
	ruff format --check python tests bench

test: test-python test-rust  ## the whole suite: pytest (incl. notebooks, stub check) + cargo tests

test-python:
	$(PY) -m pytest -q

test-rust:
	LD_LIBRARY_PATH=$(TORCH_LIB) cargo test --release --lib

bench:
	$(PY) bench/bench_rnn.py

gpu-check:  ## on an NVIDIA GPU: fresh venv, CUDA tests, GPU benchmarks, one summary (see README)
	bash bench/gpu_check.sh

wheels:  ## release wheels into dist/ for each CPython 3.9-3.13 found (or WHEELS="3.11 3.12")
	$(PY) tests/wheels/check_wheels.py build $(WHEELS)

test-wheels:  ## build, install (fresh venv, no Rust) and smoke-test wheels: this Python and one other (TEST_WHEELS=all)
	$(PY) tests/wheels/check_wheels.py test $(TEST_WHEELS)
