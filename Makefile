# Verdict: the commands the README names. Everything installs into the repo (.venv), pinned.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: test unit venv bench handbook fmt clean

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

## test: everything CI runs, from a clean clone.
test: venv
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
