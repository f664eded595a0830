# The environment target (install) creates .venv on first use and is a no-op afterwards;
# train, test and bench depend on it, so each works by itself on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install train test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# BicycleGAN on the embedded synthetic data (CPU, under 10 minutes); extra overrides: make train ARGS="..."
train: install
	$(BIN)/python -m bicyclegan_pl.train $(ARGS)

# two pytest-xdist workers of one thread each: most of a test's time is single-threaded (process start,
# imports, Trainer set-up), so two at once keep both cores busy; the Slurm tests share one worker (one cluster)
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/allocator.py
	$(BIN)/python benchmarks/guide_speed.py
	$(BIN)/python benchmarks/travelgan_memory.py
	$(BIN)/python benchmarks/checkpoint_cost.py
	$(BIN)/python benchmarks/stylegan2_step.py

clean:
	rm -rf outputs multirun .pytest_cache
