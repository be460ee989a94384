# Verdict: the commands the README names. The stack's tools install into the repo (.venv), the
# checkers into a per-user cache (TOOLS_CACHE), all pinned.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: test unit venv tools dev demo events bench handbook fmt clean upload one-build schemathesis stack-stop-test deny-check

# Checkers that are not Python libraries of the stack, pinned, installed once per user (not per
# clone) under a cache directory named by what decides them: a new pin installs beside the old one,
# and a fresh clone of the same pins reuses them.
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/verdict-tools
# cargo-deny from crates.io, compiled here (no prebuilt binary is fetched), --locked to its own lock
# file: ~5 min on 2 cores, with the crate's fat LTO switched off for the build (a checker, not a hot
# path), once per user and version.
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY_ROOT := $(TOOLS_CACHE)/cargo-deny-$(CARGO_DENY_VERSION)
CARGO_DENY := $(CARGO_DENY_ROOT)/bin/cargo-deny
# checkov pins boto3==1.35.49, networkx<2.7 and packaging<24, which would downgrade what moto and
# cfn-lint run on in .venv: it gets a venv of its own, every package pinned in
# requirements-checkov.txt, named by that file's hash.
CHECKOV_HASH := $(shell sha256sum requirements-checkov.txt | cut -c1-16)
CHECKOV_VENV := $(TOOLS_CACHE)/checkov-$(CHECKOV_HASH)
CHECKOV := $(CHECKOV_VENV)/bin/checkov

# The local stack's tools (moto, cargo-lambda with its ziglang, cfn-lint), pinned in
# requirements-dev.txt. The stamp is only touched once pip succeeded, so a failed install is
# retried by the next make.
$(VENV)/.installed: requirements-dev.txt
	@command -v python3 >/dev/null || { echo "error: python3 is needed to create $(VENV)" >&2; exit 1; }
	@python3 -m venv $(VENV) || { echo "error: python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@$(VENV)/bin/cargo-lambda lambda --version >/dev/null
	touch $@

venv: $(VENV)/.installed

# Not in CARGO_TARGET_DIR: cargo install builds in a temporary directory, not the workspace's target.
# Installed into a temporary root that is renamed into place only once it works, so an interrupted
# install (or two clones installing at once) never leaves a half-made cargo-deny that looks done.
$(CARGO_DENY):
	@mkdir -p $(TOOLS_CACHE)
	rm -rf $(CARGO_DENY_ROOT).tmp.$$PPID
	env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
		$(CARGO) install --locked --root $(CARGO_DENY_ROOT).tmp.$$PPID cargo-deny --version $(CARGO_DENY_VERSION)
	@$(CARGO_DENY_ROOT).tmp.$$PPID/bin/cargo-deny --version | grep -qx 'cargo-deny $(CARGO_DENY_VERSION)'
	@mv -T $(CARGO_DENY_ROOT).tmp.$$PPID $(CARGO_DENY_ROOT) 2>/dev/null || rm -rf $(CARGO_DENY_ROOT).tmp.$$PPID
	@test -x $@

# The stamp is only touched once pip succeeded, so a failed install is retried by the next make.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@mkdir -p $(TOOLS_CACHE)
	@python3 -m venv $(CHECKOV_VENV) || { echo "error: python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@$(CHECKOV) --version >/dev/null
	touch $@

tools: $(CARGO_DENY) $(CHECKOV_VENV)/.installed

## deny-check: every cargo-deny check, advisories included (they fetch the RustSec database from GitHub; CI runs this).
deny-check: $(CARGO_DENY)
	$(CARGO_DENY) check

## dev: the whole stack locally (moto + cargo lambda watch), with a model, a key and curl commands.
dev: venv
	@bash scripts/dev.sh

## demo: the same stack non-interactively; scores a few hundred transactions over HTTP, then stops.
demo: venv
	@bash scripts/demo.sh

## events: with `make dev` running, the events that arrived on the local bus (its SQS tap), newest last.
events: venv
	@bash scripts/events.sh

## upload: with `make dev` running, FILE=<path> KIND=batch|model|labels|list [TENANT= NAME= ACTIVATE=1 FEATURES= MANIFEST=] into its S3 and through the function it triggers; alone: usage.
upload: venv
	@bash scripts/upload.sh $(if $(FILE),--file "$(FILE)") $(if $(KIND),--kind "$(KIND)") \
		$(if $(TENANT),--tenant "$(TENANT)") $(if $(NAME),--name "$(NAME)") \
		$(if $(filter-out 0 false no,$(ACTIVATE)),--activate) $(if $(FEATURES),--features "$(FEATURES)") \
		$(if $(MANIFEST),--manifest "$(MANIFEST)")

## test: everything CI runs, from a clean clone.
test: venv tools
	$(CARGO) check -p verdict --no-default-features --locked
	@# aws-lc-rs (jsonwebtoken's crypto, no AWS service) is allowed; the SDK, smithy and tokio are not.
	@! $(CARGO) tree -p verdict --no-default-features -e normal --prefix none --locked | grep -E '^(aws-(config|sdk|smithy|types|runtime|sigv4|credential)|tokio |serde_dynamo )' \
		|| { echo "error: the domain and services (verdict without the aws feature) depend on the AWS SDK or tokio" >&2; exit 1; }
	@$(MAKE) --no-print-directory one-build
	@# Supply chain (deny.toml): licenses, bans, sources. Advisories need the RustSec database from
	@# GitHub, which this machine cannot reach; .github/workflows/ci.yml runs `cargo deny check`.
	$(CARGO_DENY) check licenses bans sources
	@# Infrastructure: every check passes or is skipped in template.yaml with its reason.
	$(CHECKOV) -f template.yaml --framework cloudformation --quiet --compact --skip-download
	$(CARGO) test --workspace --locked
	$(VENV)/bin/cfn-lint template.yaml
	bash scripts/stack_stop_test.sh
	@# The contract against the running stack: full-scope key, another tenant's, an expired one.
	@$(MAKE) --no-print-directory schemathesis

## stack-stop-test: `make dev` and `make demo` stopped by SIGTERM to their process group leave nothing running.
stack-stop-test: venv
	bash scripts/stack_stop_test.sh

## schemathesis: the contract (openapi.yaml) against the local stack, with a full-scope key, another tenant's and an expired one.
schemathesis: venv
	bash scripts/schemathesis.sh

# One build: the builds below reuse the artifacts of `cargo test --workspace` only while cargo
# resolves every dependency to the same features in each (workspace-hack/Cargo.toml pins them).
# A dependency whose features differ is compiled again, with everything above it (the AWS SDK).
# `cargo tree` resolves as the build would (dev edges: as the tests do) and builds nothing. Checked:
# `-p api` (tests/tests/http_watch.rs under watch), the workspace without dev-dependencies (`make
# dev`: watch runs `cargo run --bin api`), the CLI alone and with the api (scripts/lib.sh), and
# the integration tests alone. `cargo test -p verdict` alone still builds criterion's own clap.
ONE_BUILD := "watch in tests/http_watch.rs (cargo run -p api):-p api" \
	"watch in make dev (cargo run --bin api):--workspace" \
	"cargo build -p verdict-cli:-p verdict-cli" \
	"scripts/lib.sh (cargo build -p verdict-cli -p api):-p verdict-cli -p api" \
	"cargo test -p verdict-integration:-p verdict-integration -e dev"
one-build:
	@features() { $(CARGO) tree --locked --prefix none -f '{p} {f}' -e normal,build "$$@" | grep -v ' (/' | sed 's/ (\*)$$//' | sort -u; }; \
	ref="$$(features --workspace -e dev)" || exit 1; \
	status=0; \
	for sel in $(ONE_BUILD); do \
		got="$$(features $${sel#*:})" || exit 1; \
		extra="$$(comm -13 <(echo "$$ref") <(echo "$$got"))"; \
		[[ -z "$$extra" ]] && continue; \
		status=1; \
		echo "error: $${sel%%:*} resolves dependencies to other features than \`cargo test --workspace\`, so it would compile them and everything above them again; pin the tests' features in workspace-hack/Cargo.toml:" >&2; \
		while read -r name version _; do \
			echo "  $$name $$version: here  [$$(echo "$$got" | awk -v n="$$name" -v v="$$version" '$$1 == n && $$2 == v { $$1 = $$2 = ""; sub(/^ +/, ""); print }' | paste -sd' ')]" >&2; \
			echo "  $$name $$version: tests [$$(echo "$$ref" | awk -v n="$$name" -v v="$$version" '$$1 == n && $$2 == v { $$1 = $$2 = ""; sub(/^ +/, ""); print }' | paste -sd' ')]" >&2; \
		done <<<"$$extra"; \
	done; \
	exit $$status

unit:
	$(CARGO) test -p verdict --lib

bench:
	$(CARGO) bench -p verdict

handbook:
	$(CARGO) run --release --locked -p verdict-cli -- handbook

# The per-user tool cache ($(TOOLS_CACHE)) is shared by every clone and is not removed here.
clean:
	rm -rf $(VENV) target
