# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo
DEMO_ARGS ?= --model vgg11 --width 0.5 --dataset fashion-mnist --subset 15000 --epochs 10 --batch-size 128 \
             --lr 0.05 --seed 0 --patience 1 --max-prunes 2 --no-progress

.PHONY: install install-dev data demo test lint clean

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

data:
	bash scripts/get-fashion-mnist.sh $(BIN)/python

demo: install data
	$(BIN)/adprune train $(DEMO_ARGS) --prune none --out $(DEMO_DIR)/dense --overwrite
	$(BIN)/adprune train $(DEMO_ARGS) --prune adp --out $(DEMO_DIR)/adp --overwrite
	$(BIN)/adprune compare $(DEMO_DIR)/dense $(DEMO_DIR)/adp \
		--title "Fashion-MNIST (first 15000 training images, full test set), VGG-11 at width 0.5, 10 epochs, CPU: dense vs ADP"

lint: install-dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

# One thread per process: the tests start several processes at once on small machines.
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
