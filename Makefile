# curfew — the front door. `make demo` and `make test` do all set-up on a fresh machine.
.PHONY: demo test setup test-build lint-venv lint unit browser integration infra-test bench chaos build sizes synth deploy emulator clean-local help

CARGO ?= cargo
INFRA_NPM := infra/node_modules/.package-lock.json
LAMBDA_PACKAGES := -p curfew-poller -p curfew-router -p curfew-worker
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
# `make test` lints inside its test build: clippy-driver compiles the workspace's own crates with
# clippy's lints (warnings denied), as `cargo clippy` would check them, while the dependencies are
# built once instead of once checked for clippy and once more built for the tests. CLIPPY_ARGS is
# how cargo-clippy hands its arguments to the driver: each followed by __CLIPPY_HACKERY__.
CLIPPY_DRIVER := $(shell rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
LINTED := $(if $(LINT_IN_BUILD),RUSTC_WORKSPACE_WRAPPER="$(CLIPPY_DRIVER)" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

demo: ## The main job on the embedded emulator: hub + 3 spokes + ~60 targets, a simulated day of stop/start
	$(CARGO) run -p curfew-cli -- local demo

test: ## Everything CI runs: fmt, clippy, unit + emulator integration tests, infra tests and static checks
	@$(MAKE) --no-print-directory setup & setup=$$!; \
	$(MAKE) --no-print-directory test-build LINT_IN_BUILD=1; built=$$?; \
	wait $$setup; ready=$$?; \
	if [ $$ready -ne 0 ]; then echo "make test: installing the tests' tools failed (make setup, above)" >&2; fi; \
	[ $$built -eq 0 ] && [ $$ready -eq 0 ]
	$(MAKE) --no-print-directory unit infra-test LINT_IN_BUILD=1

setup: ## Install what the tests need, side by side: moto, chromium, the CDK's npm packages, cfn-lint and checkov
	$(MAKE) --no-print-directory -j4 --output-sync=target emulator browser $(INFRA_NPM) lint-venv

test-build: ## cargo fmt --check, then build every test, bench and example target (clippy's lints too with LINT_IN_BUILD=1)
	$(CARGO) fmt --all -- --check
	@test -z "$(LINT_IN_BUILD)" -o -n "$(CLIPPY_DRIVER)" || { echo "make test-build: clippy-driver not found (rustup component add clippy)" >&2; exit 1; }
	$(LINTED) $(CARGO) test --workspace --all-targets --no-run

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

emulator: ## Install moto into the project-local virtualenv (.venv-moto) if missing
	./scripts/moto-venv.sh >/dev/null

browser: ## Install Debian's chromium and chromium-driver for the console's browser tests, if missing
	./scripts/browser.sh

unit: emulator browser ## Unit tests and the emulator integration suite (each test process has its own moto, forked from one zygote)
ifeq ($(NEXTEST),yes)
	$(LINTED) ./scripts/with-moto-zygote.sh $(CARGO) nextest run --workspace --no-fail-fast
	$(LINTED) $(CARGO) test --workspace --doc
else
	$(LINTED) ./scripts/with-moto-zygote.sh $(CARGO) test --workspace
endif

$(INFRA_NPM): infra/package.json infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund

lint-venv: ## Install cfn-lint and checkov for the template checks into infra/.venv, if missing
	infra/scripts/lint-templates.sh --install

infra-test: $(INFRA_NPM) ## CDK assertion tests + cdk-nag, offline synth, cfn-lint and checkov (no AWS, no cross-compile)
	cd infra && npm test

bench: emulator ## Benchmarks: 1,000 emulator targets against moto's ceiling, Lambda cold starts and peak RSS, 100,000 targets in memory and simulated, poller reads per due schedule, next-fire; figures in target/curfew-bench.json (docs/PERFORMANCE.md)
	$(CARGO) run --release -p curfew-tests --bin curfew-bench -- $(BENCH_ARGS)
	$(CARGO) build --release $(LAMBDA_PACKAGES)
	$(CARGO) run --release -p curfew-tests --bin curfew-coldstart -- $(COLDSTART_ARGS)
	$(CARGO) run --release -p curfew-tests --bin curfew-scale -- $(SCALE_ARGS)
	$(CARGO) run --release -p curfew-tests --bin curfew-sim -- $(SIM_ARGS)
	$(CARGO) run --release -p curfew-tests --bin curfew-poll-bench -- $(POLL_ARGS)
	$(CARGO) bench -p curfew-core --bench next_fire
	$(CARGO) run --release -p curfew-tests --bin curfew-next-fire

SEEDS ?= 10000
FIRST_SEED ?= 1
MIX ?= fleet
chaos: ## Chaos suite: SEEDS seeded runs (default 10000; SEED=S replays one; MIX=holds for held clusters racing) of faults over the real handlers, checked against the model
ifdef SEED
	$(CARGO) run --release -p curfew-tests --bin curfew-chaos -- --seed $(SEED) --mix $(MIX)
else
	$(CARGO) run --release -p curfew-tests --bin curfew-chaos -- --seeds $(SEEDS) --first $(FIRST_SEED) --mix $(MIX)
endif

build: ## Build the poller, router and worker as arm64 Lambda bootstraps with cargo-lambda (zig, no Docker)
	rustup target add aarch64-unknown-linux-gnu
	infra/scripts/with-cargo-lambda.sh cargo lambda build --release --arm64 $(LAMBDA_PACKAGES) $(BUILD_ARGS)

sizes: ## Build the arm64 Lambdas as zips (make build) and record each bootstrap.zip's size in target/curfew-bench.json
	$(MAKE) build BUILD_ARGS="--output-format zip"
	$(CARGO) run --release -p curfew-tests --bin curfew-zip-sizes

synth: $(INFRA_NPM) ## Synthesize the hub and spoke templates into infra/cdk.out with the real arm64 Lambda assets
	cd infra && CDK_DISABLE_CLI_TELEMETRY=true ./scripts/with-cargo-lambda.sh npx cdk synth --no-notices --quiet

deploy: build $(INFRA_NPM) ## Deploy the hub to the current AWS account/region (docs/DEPLOY.md; not run in CI)
	cd infra && CDK_DISABLE_CLI_TELEMETRY=true ./scripts/with-cargo-lambda.sh npx cdk deploy CurfewHub --exclusively --no-notices $(DEPLOY_ARGS)

clean-local: ## Stop a `curfew local up` emulator and remove its state
	-$(CARGO) run -q -p curfew-cli -- local down
