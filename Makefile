# Verdict: the commands the README names. Everything installs into the repo (.venv), pinned.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: test unit venv dev demo bench handbook fmt clean upload

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

## dev: the whole stack locally (moto + cargo lambda watch), with a model, a key and curl commands.
dev: venv
	@bash scripts/dev.sh

## demo: the same stack non-interactively; scores a few hundred transactions over HTTP, then stops.
demo: venv
	@bash scripts/demo.sh

## upload: with `make dev` running, FILE=<path> KIND=batch|model|labels [TENANT= NAME= ACTIVATE=1 FEATURES= MANIFEST=] into its S3 and through the function it triggers; alone: usage.
upload: venv
	@bash scripts/upload.sh $(if $(FILE),--file "$(FILE)") $(if $(KIND),--kind "$(KIND)") \
		$(if $(TENANT),--tenant "$(TENANT)") $(if $(NAME),--name "$(NAME)") \
		$(if $(filter-out 0 false no,$(ACTIVATE)),--activate) $(if $(FEATURES),--features "$(FEATURES)") \
		$(if $(MANIFEST),--manifest "$(MANIFEST)")

## test: everything CI runs, from a clean clone.
test: venv
	$(CARGO) check -p verdict --no-default-features --locked
	@! $(CARGO) tree -p verdict --no-default-features -e normal --prefix none --locked | grep -E '^(aws-|tokio |serde_dynamo )' \
		|| { echo "error: the domain and services (verdict without the aws feature) depend on the AWS SDK or tokio" >&2; exit 1; }
	$(CARGO) test --workspace --locked
	$(VENV)/bin/cfn-lint template.yaml

unit:
	$(CARGO) test -p verdict --lib

bench:
	$(CARGO) bench -p verdict

handbook:
	$(CARGO) run --release --locked -p verdict-cli -- handbook

clean:
	rm -rf $(VENV) target
