# The two commands of the README: `make demo` (the main job) and `make test` (the linter, the strict documentation
# build, then the test suite). Both create .venv on first use and install PyTorch (the CPU build, torch==2.13.0) and
# tractable into it; `make test` (and `make install`) also installs Debian's chromium and chromium-driver for the
# browser test of the site where they are missing and apt-get can (tests/test_browser.py skips, saying why, if not).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint docs browser tutorials clean

install: $(STAMP) browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's chromium and chromium-driver for tests/test_browser.py, when absent (make install and make test; not make demo)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	  } >/dev/null 2>&1 || echo "note: chromium and chromium-driver could not be installed; tests/test_browser.py will skip"; }

demo: $(STAMP)
	$(BIN)/tractable fit ring --flow planar --layers 16 --steps 10000 --batch-size 512 --lr 2e-3 --seed 0 --out $(DEMO_OUT) --overwrite

test: lint docs browser
	$(BIN)/python -m pytest -q -n 2 --durations=10

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Re-execute every tutorial at its full budget (each under 3 minutes on 2 cores) into docs/tutorials/*.ipynb.
tutorials: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tutorials/execute.py

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks docs/hooks tutorials

clean:
	rm -rf $(VENV) runs site .pytest_cache .cache
