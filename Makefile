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

# llama-cpp-python builds from source (about 7 minutes on 2 cores), once per machine, into a
# wheel kept outside the checkout. It is built without -march=native: a native build turns on
# llama.cpp's AMX kernels on recent Xeons, and those crash on the embedded model's Q4_1 weights
# (a segmentation fault at the first decode, seen with 0.3.36).
LLAMA  := llama-cpp-python==0.3.36
WHEELS := $(HOME)/.cache/cai/wheels

$(WHEELS)/.llama-portable: | $(PY)
	mkdir -p $(WHEELS)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip wheel -q --disable-pip-version-check \
		--no-cache-dir --no-deps $(LLAMA) -w $(WHEELS)
	touch $@

$(VENV)/.llama: $(WHEELS)/.llama-portable | $(PY)
	$(PIP) --no-deps --no-index --find-links $(WHEELS) $(LLAMA)
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.llama
	$(PIP) -e '.[local]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch $(VENV)/.llama
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

# The fast tier, for while you work: no embedded model, no training, no browser, nothing slow
# (markers given in tests/conftest.py), the slowest tests named at the end.
.PHONY: test-fast
FAST := not slow and not local and not train and not browser
test-fast: $(VENV)/.test
	$(PY) -m pytest -q -ra -m "$(FAST)" --durations=15; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(VENV)/.test
	$(VENV)/bin/ruff check cai tests benchmarks
	$(VENV)/bin/mypy cai
	$(VENV)/bin/lint-imports

# Speed and memory targets live here, not in the tests; results go to benchmarks/results/.
bench: $(VENV)/.test
	$(PY) -m benchmarks.run

# The docs site (docs/, mkdocs.yml): --strict fails on any warning, a broken link or anchor
# among them. The CLI reference is generated from the click commands, so cai (its core, no
# extras: the commands import their heavy libraries only when run) is installed too.
.PHONY: docs
$(VENV)/.docs: pyproject.toml docs/requirements.txt | $(PY)
	$(PIP) -e . -r docs/requirements.txt
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	$(PY) scripts/readme_links.py

clean:
	rm -rf $(VENV) out .pytest_cache
