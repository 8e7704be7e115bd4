# `make demo` and `make test` set everything up on a fresh machine (Linux, Python >= 3.10).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NOTEBOOK_OUT ?= runs/notebook

.PHONY: install demo notebook test test-quick lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mhss-tune --space search_spaces/demo.yaml --overwrite
	@echo "next: $(BIN)/mhss-analyze runs/studies/demo   (tables, plots, the best config; then: make notebook)"

# the analysis notebook, headless, on MHSS_STUDY (default runs/studies/demo, after `make demo`): the
# executed copy, with every table and plot, goes to $(NOTEBOOK_OUT)/explore_study.ipynb
notebook: $(STAMP)
	@$(BIN)/python -m mhss_ray.analysis.notebook_ready
	$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600 \
		--output-dir $(NOTEBOOK_OUT) analysis/explore_study.ipynb
	@echo "open it with: $(BIN)/pip install jupyterlab && $(BIN)/jupyter lab $(NOTEBOOK_OUT)/explore_study.ipynb"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check mhss_ray benchmarks tests

test-quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
