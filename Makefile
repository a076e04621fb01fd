# contextd: `make demo` installs everything into .venv and serves the sample company;
# `make test` runs the whole suite. Both work on a fresh machine with nothing installed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test bench bench-quality lint clean docs

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	@echo "==> [1/3] creating the virtualenv in $(VENV)"
	$(PYTHON) -m venv $(VENV)

# torch is pinned first so nothing pulls the CUDA build from the registry. pip prints its
# own progress (downloads, builds); the first install takes a few minutes.
$(STAMP): pyproject.toml | $(BIN)/python
	@echo "==> [2/3] installing torch (CPU build; the largest download)"
	$(BIN)/pip install --disable-pip-version-check --progress-bar on torch==2.13.0
	@echo "==> [3/3] installing contextd and its dependencies"
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -e '.[dev]'
	touch $(STAMP)
	@echo "==> installed; \`make demo\` starts the sample company"

install: $(STAMP)

demo: $(STAMP)
	@echo "==> loading the sample company (first run embeds about 70 documents), then serving"
	$(BIN)/contextd demo --data sample_data

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

# Ranking quality on ../shared/data (SciFact and the BEIR subsets) and generated suites;
# writes bench/results/quality-<date>.log. Document vectors are cached in bench/.cache.
bench-quality: $(STAMP)
	$(BIN)/python -m bench.quality --data ../shared/data

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .contextd .pytest_cache .mypy_cache .ruff_cache

# Reference pages generated from the code (settings, connector configs); a test fails when
# they are stale.
docs:
	$(BIN)/python -m contextd.docs
