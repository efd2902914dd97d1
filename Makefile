# taas: two commands matter. `make run` starts the embedded service; `make test` runs the whole suite.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint catalog bench bench-train bench-load clean screenshot

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[api,worker,client,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/taas db upgrade
	$(BIN)/taas weights import efficientnet_lite0
	$(BIN)/taas serve

# The suite starts its own PostgreSQL and Redis (tests/servers.py); scripts/test-deps.sh installs their binaries and
# chromium when missing (Debian's packages, as root) or says what to install.
test: $(STAMP)
	@bash scripts/test-deps.sh
	$(BIN)/python -m pytest -q -rs --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app worker core client tests bench scripts

catalog: $(STAMP)
	$(BIN)/python -m worker.training.catalog

bench-load: $(STAMP)  # 300 jobs from 30 clients against PostgreSQL, Redis and two workers (not part of make test)
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) data

# docs/dashboard.png: trains a small model in a throwaway `taas serve` and photographs its job page in chromium
# (the Debian package; a few minutes on 2 cores).
screenshot: $(STAMP)
	$(BIN)/python scripts/screenshot.py

# The training benchmark: the seed's loop, a hand-tuned loop and the recipe side by side (not part of `make test`;
# about 15 minutes on 2 cores). Prints a table and writes bench/results/train.json.
.PHONY: bench-train
bench-train: $(STAMP)
	$(BIN)/python -m bench.train $(BENCH_ARGS)

# The service benchmarks: API, queue to start, upload and metric ingest, each against a baseline taken in the same
# run, on a private PostgreSQL database and Redis queue (not part of `make test`; about 10 minutes on 2 cores).
# Prints a table, writes bench/results/latest.json and rewrites the README's Performance section. Needs wrk and curl.
bench: $(STAMP)
	@{ command -v wrk && command -v curl; } >/dev/null || { echo "installing wrk and curl (apt-get install -y wrk curl)"; \
		apt-get install -y -q wrk curl >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk curl >/dev/null; }; } \
		|| { echo "could not install them: run 'apt-get install -y wrk curl' (Debian packages) as root, then 'make bench'"; exit 1; }
	$(BIN)/python -m bench.service $(BENCH_ARGS)
