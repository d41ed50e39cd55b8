# The two commands of the README: `make demo` (the main job) and `make test` (the linter, then the test suite).
# Both create .venv on first use and install PyTorch (the CPU build, torch==2.13.0) and tractable into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint clean tutorials

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tractable fit ring --flow planar --layers 16 --steps 10000 --batch-size 512 --lr 2e-3 --seed 0 --out $(DEMO_OUT) --overwrite

test: lint
	$(BIN)/python -m pytest -q -n 2 --durations=10

# Re-execute every tutorial at its full budget (each under 3 minutes on 2 cores) into docs/tutorials/*.ipynb.
tutorials: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tutorials/execute.py

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
