# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo
# Every method option at adprune train's defaults; the model size and the budget fit a CPU (README: "make demo").
DEMO_ARGS ?= --model vgg11 --width 0.5 --dataset fashion-mnist --subset 15000 --epochs 20 --eval-every 5 \
             --seed 0 --no-progress

.PHONY: install install-dev data demo test lint wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

data: install
	bash scripts/get-fashion-mnist.sh $(BIN)/python
	$(BIN)/python scripts/check_fashion_mnist.py

demo: install data
	$(BIN)/adprune train $(DEMO_ARGS) --prune none --out $(DEMO_DIR)/dense --overwrite
	$(BIN)/adprune train $(DEMO_ARGS) --prune adp --out $(DEMO_DIR)/adp --overwrite
	$(BIN)/adprune compare $(DEMO_DIR)/dense $(DEMO_DIR)/adp \
		--title "Fashion-MNIST (first 15000 training images, full test set), VGG-11 at width 0.5, 20 epochs, CPU: dense vs ADP"

lint: install-dev
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts

# One thread per process: the tests start several processes at once on small machines.
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

# The sdist and wheel, the wheel installed into a new virtual environment and used outside the tree.
wheel-check: install-dev
	bash scripts/check-wheel.sh $(BIN)/python

clean:
	rm -rf $(VENV) runs dist build .pytest_cache .ruff_cache
