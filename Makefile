# Every target creates (or reuses) the virtual environment it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: all test fuzz bench clean venv c-target bench-targets

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# The example C target (examples/c-target): built when a C compiler exists;
# the tests that need it skip, saying why, when it does not.
C_TARGET := examples/c-target/vsock_target
HAVE_CC := $(shell command -v $(CC) 2>/dev/null)

c-target: $(C_TARGET)

$(C_TARGET): examples/c-target/vsock_target.c
	$(CC) -O2 -Wall -Wextra -o $@ $<

# Throughput to the C target, serve and py: targets; RSS over a campaign.
bench-targets: $(STAMP) $(C_TARGET)
	$(BIN)/python benchmarks/bench_targets.py

test: $(STAMP) $(if $(HAVE_CC),$(C_TARGET))
	$(BIN)/python -m pytest -q

fuzz: $(STAMP)
	$(BIN)/vsock-fuzz fuzz --target reference --max-time 30

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis/tmp
	rm -f $(C_TARGET)
