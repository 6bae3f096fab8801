# `make demo` and `make test` do all the set-up themselves and are quick once it is done.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

# The CPU build of torch that lies on disk; an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.torch: | $(PY)
	$(PIP) torch==2.13.0
	touch $@

# llama-cpp-python builds from source once (about 7 minutes on 2 cores); pip caches the wheel.
$(VENV)/.demo: pyproject.toml | $(PY)
	$(PIP) -e '.[local]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch
	$(PIP) -e '.[local,train,dev]'
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(VENV)/bin/cai constitution check constitutions/*.yaml
	$(VENV)/bin/cai revise --prompts examples/prompts.jsonl \
		--constitution constitutions/harmless.yaml --rounds 2 --out out/demo
	@echo "SFT data: out/demo/sft.jsonl  preference pairs: out/demo/prefs.jsonl  trace: out/demo/trace.jsonl"

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: $(VENV)/.test
	$(PY) -m pytest -q -ra; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(VENV)/.test
	$(VENV)/bin/ruff check cai tests benchmarks
	$(VENV)/bin/mypy cai

# Speed and memory targets live here, not in the tests; results go to benchmarks/results/.
bench: $(VENV)/.test
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) out .pytest_cache
