PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench format clean

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

test: install
	$(BIN)/python -m pytest tests --durations=25

# the edit-test loop: unit and contract tests, no Ray cluster, no MLflow server, nothing slow
test-fast: install
	$(BIN)/python -m pytest tests -m "not integration and not slow" --durations=10

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
	rm -rf $(VENV) build *.egg-info
