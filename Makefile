# Every target creates (or reuses) the virtual environment it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: all test fuzz bench bench-full clean venv c-target bench-targets coverage adapters

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
C_TARGET_COV := examples/c-target/vsock_target_cov
HAVE_CC := $(shell command -v $(CC) 2>/dev/null)

c-target: $(C_TARGET) $(C_TARGET_COV)

$(C_TARGET): examples/c-target/vsock_target.c
	$(CC) -O2 -Wall -Wextra -o $@ $<

# The same target instrumented for the coverage channel (docs/protocol-extensions.md): its
# blocks call vsock_cov.c's __sanitizer_cov_trace_pc (gcc or clang), which is built without it.
$(C_TARGET_COV): examples/c-target/vsock_target.c examples/c-target/vsock_cov.c
	$(CC) -O2 -Wall -Wextra -c -o $@.o examples/c-target/vsock_cov.c
	$(CC) -O2 -Wall -Wextra -fsanitize-coverage=trace-pc -o $@ examples/c-target/vsock_target.c $@.o
	rm -f $@.o

# Throughput to the C target, serve and py: targets; RSS over a campaign.
bench-targets: $(STAMP) $(C_TARGET)
	$(BIN)/python benchmarks/bench_targets.py

# The Rust adapters (adapters/rust: the kit, rust-vmm virtio-vsock targets): built when
# cargo exists, from the committed Cargo.lock (offline once the crates are fetched),
# with the kit's unit tests, which tests/test_rust_adapters.py runs; it fails, saying
# so, when cargo is missing.
HAVE_CARGO := $(shell command -v cargo 2>/dev/null)

adapters:
	cd adapters/rust && cargo build --release --locked && cargo test --release --locked --no-run -q

test: $(STAMP) $(if $(HAVE_CC),$(C_TARGET) $(C_TARGET_COV)) $(if $(HAVE_CARGO),adapters)
	$(BIN)/python -m pytest -q

# A newcomer's first campaign: the model under every oracle, 30 s from the seed corpus.
fuzz: $(STAMP)
	$(BIN)/vsock-fuzz fuzz --target reference --max-time 30 --corpus corpus/target --dict corpus/vsock.dict --out fuzz-out

# Every benchmark script with short budgets (about two minutes), figures printed;
# bench-full runs them with their own defaults (far longer: bench_fuzz's
# time-to-first-finding table alone is 99 campaigns of up to 60 s each).
# bench_gap: campaign exec/s against each device over its own pace, and the per-case breakdown.
BENCH_DEPS := $(STAMP) $(if $(HAVE_CC),$(C_TARGET))
bench: $(BENCH_DEPS)
	$(BIN)/python benchmarks/bench.py --quick
	$(BIN)/python benchmarks/corpus_bench.py
	$(BIN)/python benchmarks/bench_targets.py --quick
	$(BIN)/python benchmarks/bench_fuzz.py --quick
	$(BIN)/python benchmarks/bench_gap.py --quick

bench-full: $(BENCH_DEPS)
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/corpus_bench.py
	$(BIN)/python benchmarks/bench_targets.py
	$(BIN)/python benchmarks/bench_fuzz.py
	$(BIN)/python benchmarks/bench_gap.py

# Branch coverage of the model (.coveragerc) under the test suite plus a short
# fuzz campaign, whose corpus (every input that reached new coverage) is
# replayed under coverage as OSS-Fuzz coverage builds do. HTML in htmlcov/,
# the total on one line, then the branches no engine reached. A failing test
# is reported but does not stop the report.
COV := $(BIN)/python -m coverage
COV_FUZZ_TIME ?= 20
COV_FUZZ_DIR := .coverage-fuzz
coverage: $(STAMP) $(if $(HAVE_CC),$(C_TARGET))
	$(COV) erase
	rm -rf $(COV_FUZZ_DIR) htmlcov
	-$(COV) run -m pytest -q -p no:cacheprovider
	$(BIN)/vsock-fuzz fuzz --target reference --jobs 2 --max-time $(COV_FUZZ_TIME) --out $(COV_FUZZ_DIR) > /dev/null
	$(COV) run -m vsock_fuzz replay --target reference -q $(COV_FUZZ_DIR)/.corpus/atheris
	$(COV) combine -q
	$(COV) html -q
	$(COV) json -q -o coverage.json
	@echo "model branch coverage (suite + fuzz): $$($(COV) report --format=total)% -- htmlcov/index.html"
	$(BIN)/python scripts/coverage_gaps.py coverage.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis/tmp htmlcov .coverage-fuzz coverage.json
	rm -f $(C_TARGET)
