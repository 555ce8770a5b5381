# cognito-onboard: the commands people and CI use. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PREFIX ?= $(HOME)/.local

.PHONY: help venv browser prometheus demo test bench lint fmt clean install workbooks

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Install moto and the AWS clients into .venv (once)

$(VENV)/.installed: scripts/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
	touch $@

browser: ## Install headless Chromium and a Japanese font (Debian packages) for the report page's test, where missing
	scripts/chromium.sh

prometheus: ## Put promtool and node_exporter (from Debian's packages) in .tools/bin for the metrics file's tests
	scripts/prometheus.sh

demo: venv ## Run the whole job against a local Cognito emulator
	cargo build --quiet
	scripts/demo.sh

# The last step checks what `cargo install` builds: a release build can fail where a debug one
# passes (the compiler's layout depth for deep async types once did), and checking finds it in
# a minute where building takes seven.
test: venv browser prometheus ## Run every test: formatting, lints, unit and end-to-end tests (the report page in headless Chromium), and a check of the release build
	cargo fmt --all -- --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo test --lib --bins --tests
	cargo check --release --quiet

lint: ## Formatting and lints only
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

install: ## cargo install the binary, then its man page and bash completion under PREFIX (default ~/.local)
	cargo install --locked --path .
	mkdir -p $(PREFIX)/share/man/man1 $(PREFIX)/share/bash-completion/completions
	cognito-onboard man > $(PREFIX)/share/man/man1/cognito-onboard.1
	cognito-onboard completions bash > $(PREFIX)/share/bash-completion/completions/cognito-onboard

workbooks: venv ## Write samples/providers.xlsx and the corpus's workbooks again (committed; see tests/corpus/README.md)
	$(PY) scripts/workbooks.py

clean: ## Remove build output and the venv
	cargo clean
	rm -rf $(VENV)

bench: venv ## Benchmark against moto behind the quota-enforcing proxy; writes bench/results.md (about 80 min; BENCH_DYNAMODB=0 leaves out the 50-min DynamoDB step)
	cargo bench --bench onboard
