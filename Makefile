# meshcast-testbed: the README's commands.  `sudo make demo`, `sudo make test`.
VENV   ?= .venv
BIN    := $(VENV)/bin
SCENARIO ?= experiments/default.yaml

.PHONY: setup demo test unit integration lint bench clean help vm-check

help:
	@echo "sudo make demo    run the default scenario (sets up first)"
	@echo "sudo make test    lint and the whole test suite (sets up first)"
	@echo "sudo make setup   install packages, start Open vSwitch, create .venv"
	@echo "sudo make bench   benchmarks (JSON in benchmarks/out/)"
	@echo "sudo make vm-check  netem links and the OVS kernel datapath in a Debian 12 VM"
	@echo "sudo make clean   remove everything a testbed run left behind"

setup:
	@bash vagrant/provision.sh

demo: setup
	$(BIN)/testbed demo $(SCENARIO)

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest tests

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest -m integration tests/integration

bench: setup
	$(BIN)/python benchmarks/run_all.py

# Needs no .venv: the guest has its own (vm/check.sh; evidence in vm/out/ or VM_OUT).
vm-check:
	@bash vm/check.sh

clean:
	@if [ -x $(BIN)/testbed ]; then $(BIN)/testbed clean; fi
