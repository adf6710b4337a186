# The two commands of the README. Each sets itself up on a fresh machine:
# a virtual environment in .venv with torch pinned to the CPU build (2.13.0)
# installed first, so that no other package can pull a CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/netshrink demo

test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) runs
