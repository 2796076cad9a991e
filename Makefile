PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench format clean docs test-fast

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch first, pinned to the CPU wheel; the project only asks for a range.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/unlearn demo

# two pytest-xdist workers, a test file per worker at a time (module fixtures stay one per
# file), the longest files first (tests/conftest.py orders them)
test: install
	$(BIN)/python -m pytest tests -n 2 --dist loadfile --no-loadscope-reorder --durations=25

# the documentation site: a results page out of date with its record, a broken link or a
# missing page fails the build
docs: install
	$(BIN)/python -m unlearn.bench.pages --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# the edit-test loop: unit and contract tests, no Ray cluster, no MLflow server, nothing slow
test-fast: install
	$(BIN)/python -m pytest tests -m "not integration and not slow" -n 2 --dist loadfile --no-loadscope-reorder --durations=10

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# the CPU-sized comparison on the tiny model, with the performance ratios measured in the same run
bench: install
	$(BIN)/unlearn pretrain --config configs/tiny.yaml
	$(BIN)/unlearn bench --config configs/tiny.yaml --preset cpu --perf

clean:
	rm -rf $(VENV) build site *.egg-info
