# The two commands: `make demo` and `make test`. Everything else is what they use.
SHELL := /bin/bash
CACHE ?= $(or $(RECGPT_CACHE),$(HOME)/.cache/recgpt)
export RECGPT_CACHE := $(CACHE)
# Builds live outside the clone so reruns (and fresh clones) reuse them.
export CARGO_TARGET_DIR ?= $(CACHE)/target
export RECGPT_MODEL ?= $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
# all-MiniLM-L6-v2, the text embedder.
export RECGPT_EMBEDDER ?= $(CACHE)/models/all-MiniLM-L6-v2
# llama.cpp's OpenAI-compatible server, for the OpenAI-compatible backend's tests.
export RECGPT_LLAMA_SERVER ?= $(CACHE)/llama-server/bin/llama-server
# The demo's data home; pass RECGPT_HOME to use another.
export RECGPT_HOME ?= $(CACHE)/demo-home
DEMO_USERS ?= 3
BUDGET ?= 1024
DEMO_PORT ?= 18080
# Users of the demo's batch job (the first N in user-id order), with scripts/quick.toml.
JOB_USERS ?= 8

# The release build, for the benchmarks and the evaluation harness.
RECGPT := $(CARGO_TARGET_DIR)/release/recgpt
# The demo runs the test build's binary (dependencies optimised as in release,
# `[profile.dev.package."*"]`), so `make demo` and `make test` compile llama.cpp once between them.
RECGPT_DEMO := $(CARGO_TARGET_DIR)/debug/recgpt

.PHONY: demo test test-build test-suite deps model qwen judge-model embedder server postgres browser lint build build-dev bench eval prompts-update build-mistralrs test-mistralrs

deps:
	@scripts/setup.sh deps

# The smallest model (tests and demo).
model: deps
	@scripts/setup.sh model >/dev/null

# The batch job's default model (Qwen2.5-Coder-0.5B), which the default-configuration tests load.
qwen: deps
	@scripts/setup.sh qwen 0.5b >/dev/null

# The judge's model (Qwen2.5-Coder-1.5B), the largest the setup provides (`recgpt judge`).
judge-model: deps
	@scripts/setup.sh qwen 1.5b >/dev/null

embedder: deps
	@scripts/setup.sh embedder >/dev/null

server: deps
	@scripts/setup.sh server >/dev/null

postgres: deps
	@scripts/setup.sh postgres >/dev/null

# Chromium and chromedriver, for the inspector's browser test.
browser: deps
	@scripts/setup.sh browser >/dev/null

build: deps
	cargo build --release --locked -p recgpt

build-dev: deps
	cargo build --locked -p recgpt --bin recgpt

demo: model qwen embedder build-dev
	$(RECGPT_DEMO) import online-retail "$$(scripts/setup.sh data)"
	$(RECGPT_DEMO) stats narratives --budget $(BUDGET)
	$(RECGPT_DEMO) categories
	@users=$$($(RECGPT_DEMO) users --json --limit 200 | python3 -c 'import json,sys; u=json.load(sys.stdin); print(" ".join(r["user"] for r in u[100:100+$(DEMO_USERS)]))'); \
	for user in $$users; do \
		echo; echo "== narrative of user $$user =="; \
		$(RECGPT_DEMO) narrative $$user --budget $(BUDGET); \
	done; \
	user=$${users%% *}; \
	echo; echo "== three-tower model and Qdrant Edge index =="; \
	$(RECGPT_DEMO) train && $(RECGPT_DEMO) index build && \
	echo && echo "== user $$user: interests, tags, retrieval by tags, explanations (SmolLM2-135M on CPU) ==" && \
	$(RECGPT_DEMO) recommend $$user --k 10 --budget $(BUDGET) && \
	echo && echo "== the batch job: recgpt run on the first $(JOB_USERS) users (scripts/quick.toml) ==" && \
	$(RECGPT_DEMO) --config scripts/quick.toml run --users $(JOB_USERS) && \
	$(RECGPT_DEMO) --config scripts/quick.toml run --users $(JOB_USERS) | head -3 && \
	job_user=$$($(RECGPT_DEMO) export recommendations | python3 -c 'import json,sys; print(next(r["user"] for r in map(json.loads, sys.stdin) if r["interests"]["interests"]))') && \
	echo && echo "== recgpt show $$job_user ==" && \
	$(RECGPT_DEMO) --config scripts/quick.toml show $$job_user && \
	echo && echo "== recgpt serve: real requests and responses ==" && \
	scripts/demo-serve.sh $(RECGPT_DEMO) $$user $(DEMO_PORT)

# The evaluation harness at the default settings (every method, split 2011-11-01).
eval: model embedder build
	$(RECGPT) import online-retail "$$(scripts/setup.sh data)" > /dev/null
	$(RECGPT) eval --split 2011-11-01

# The lint on its own (`make test` lints inside its test build, below).
lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# `make test` lints while it builds: clippy-driver compiles the workspace's own crates (every
# target, warnings denied, the lints `cargo clippy` runs) and the dependencies are compiled
# once, for the tests, instead of a second time in check mode as a separate `cargo clippy`
# does. Every cargo command of the suite runs with it, so none compiles our crates again.
LINTED := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-Dwarnings

# The test build of recgpt, for the prompt regression (same llama.cpp build as the tests).
RECGPT_DEV := $(LINTED) cargo run --locked -q -p recgpt --bin recgpt --
TEST_HOME := $(CACHE)/test-home

# The LLM quality loop's CI-sized run: a few users of the dev split, with floors.
LOOP_USERS ?= 3

# Formatting, then the linted test build; `llama-server` is built after it, against the ggml
# that llama-cpp-sys-2 compiled for the tests (scripts/setup.sh server), so ggml is compiled once.
# The suite runs beside a throwaway PostgreSQL cluster (scripts/pg-test.sh), stopped afterwards.
test: model qwen judge-model embedder postgres browser test-build
	@scripts/setup.sh server >/dev/null
	@scripts/pg-test.sh run $(MAKE) --no-print-directory test-suite

test-build: deps
	cargo fmt --all -- --check
	$(LINTED) cargo test --workspace --all-targets --locked --no-run

test-suite:
	RECGPT_DATA="$$(scripts/setup.sh data)" $(LINTED) cargo test --workspace --locked
	$(RECGPT_DEV) --home $(TEST_HOME) import online-retail "$$(scripts/setup.sh data)" > /dev/null
	$(RECGPT_DEV) --home $(TEST_HOME) prompts test
	$(RECGPT_DEV) --home $(TEST_HOME) eval llm --split 2011-10-01 --users $(LOOP_USERS) --epochs 2 --no-cache \
		--floors prompts/cases/llm_floors.json
	$(RECGPT_DEV) --home $(TEST_HOME) judge --cases prompts/cases/judge/ci.jsonl \
		--floors prompts/cases/judge/floors.json

# Accept changed prompt-regression outputs (review the diff of prompts/cases/expected/ first).
prompts-update: model
	$(RECGPT_DEV) --home $(TEST_HOME) import online-retail "$$(scripts/setup.sh data)" > /dev/null
	$(RECGPT_DEV) --home $(TEST_HOME) prompts test --update

bench: model embedder postgres build
	$(RECGPT) import online-retail "$$(scripts/setup.sh data)"
	$(RECGPT) bench append --data "$$(scripts/setup.sh data)"
	$(RECGPT) bench compress --budget $(BUDGET)
	$(RECGPT) bench embed
	$(RECGPT) train --until 2011-11-01
	$(RECGPT) bench retrieval
	$(RECGPT) bench cf
	$(RECGPT) train && $(RECGPT) index build
	$(RECGPT) recommend 12347 13018 --k 20
	scripts/pg-test.sh run sh -c '$(RECGPT) bench serve --postgres "$$RECGPT_TEST_POSTGRES"'
	$(RECGPT) --config scripts/quick.toml bench job --users 3 --scale 1,10

# The mistral.rs backend (GPU path): a long build (~40 min on 2 cores), in its own target
# directory, with AVX2/FMA kernels (mistral.rs is far slower on x86 without them). Add
# MISTRALRS_FEATURES=mistralrs-cuda on a machine with the CUDA toolkit.
MISTRALRS_FEATURES ?= mistralrs
MISTRALRS_ENV := CARGO_TARGET_DIR=$(CACHE)/target-mistralrs RUSTFLAGS="-C target-feature=+avx2,+fma"

build-mistralrs: model
	$(MISTRALRS_ENV) cargo build --release --locked -p recgpt --features $(MISTRALRS_FEATURES)

# The stage tests with the mistral.rs backend.
test-mistralrs: model
	$(MISTRALRS_ENV) RECGPT_DATA="$$(scripts/setup.sh data)" cargo test --release --locked \
		-p recgpt --features $(MISTRALRS_FEATURES) --test e2e -- mistralrs
