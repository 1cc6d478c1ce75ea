# Every target creates (or reuses) the virtual environment it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: all test fuzz bench bench-full clean venv c-target bench-targets coverage adapters core

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
C_TARGET_COV_GUARD := examples/c-target/vsock_target_cov_guard
HAVE_CLANG := $(shell command -v clang 2>/dev/null)

c-target: $(C_TARGET) $(C_TARGET_COV) $(if $(HAVE_CLANG),$(C_TARGET_COV_GUARD))

$(C_TARGET): examples/c-target/vsock_target.c
	$(CC) -O2 -Wall -Wextra -o $@ $<

# The same target instrumented for the coverage channel (docs/protocol-extensions.md): its
# blocks call vsock_cov.c's __sanitizer_cov_trace_pc (gcc or clang), which is built without it,
# and its comparisons __sanitizer_cov_trace_cmp* (trace-cmp: the compare hints of shm-8bit-v2).
$(C_TARGET_COV): examples/c-target/vsock_target.c examples/c-target/vsock_cov.c
	$(CC) -O2 -Wall -Wextra -c -o $@.o examples/c-target/vsock_cov.c
	$(CC) -O2 -Wall -Wextra -fsanitize-coverage=trace-pc,trace-cmp -o $@ examples/c-target/vsock_target.c $@.o
	rm -f $@.o

# And with clang's trace-pc-guard (vsock_cov.c numbers the guards), when clang exists:
# .ci/run installs it, and tests/test_target_coverage.py fails in CI without it.
$(C_TARGET_COV_GUARD): examples/c-target/vsock_target.c examples/c-target/vsock_cov.c
	clang -O2 -Wall -Wextra -c -o $@.o examples/c-target/vsock_cov.c
	clang -O2 -Wall -Wextra -fsanitize-coverage=trace-pc-guard,trace-cmp -o $@ examples/c-target/vsock_target.c $@.o
	rm -f $@.o

# Throughput to the C target, serve and py: targets; RSS over a campaign.
bench-targets: $(STAMP) $(C_TARGET)
	$(BIN)/python benchmarks/bench_targets.py

# The Rust adapters (adapters/rust: the kit, rust-vmm virtio-vsock targets): built when
# cargo exists, from the committed Cargo.lock (offline once the crates are fetched),
# with the kit's unit tests, which tests/test_rust_adapters.py runs; it fails, saying
# so, when cargo is missing.
HAVE_CARGO := $(shell command -v cargo 2>/dev/null)

# The example target's crash-prone twin (--features panic-on-unmapped-avail, its own target
# dir): it panics on an unmapped available ring, as libkrun did (tests/test_crash_frames.py,
# benchmarks/bench_gap.py).
# Then the rust-vmm 0.12.0 and example targets again, with SanitizerCoverage's inline 8-bit
# counters and compare tracing, for the coverage channel (adapters/rust/kit/src/coverage.rs): in target/cov,
# --target given so that the flags reach the targets but not build scripts or proc macros.
RUST_HOST = $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RUST_COV_FLAGS := -C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
	-C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-trace-compares

adapters:
	cd adapters/rust && cargo build --release --locked && cargo test --release --locked --no-run -q
	cd adapters/rust && cargo build --release --locked -p vsock-target-example --features panic-on-unmapped-avail \
		--target-dir target/avail-panic
	cd adapters/rust && RUSTFLAGS="$(RUST_COV_FLAGS)" cargo build --release --locked --target $(RUST_HOST) \
		--target-dir target/cov -p vsock-target-rust-vmm -p vsock-target-example

# The compiled per-case core (core/, vsock_fuzz/core.py), installed into the venv as a user
# installs it (pip builds it with maturin, its coverage counters included); without cargo
# every case takes the Python path, and says so. tests/test_core.py fails without it.
CORE_STAMP := $(VENV)/.core-installed
CORE_SOURCES := $(wildcard core/*.toml core/Cargo.lock core/src/*.rs core/case/Cargo.toml core/case/src/*.rs)

core: $(CORE_STAMP)

$(CORE_STAMP): $(STAMP) $(CORE_SOURCES)
	$(BIN)/python -m pip install -q ./core
	touch $@

test: $(STAMP) $(if $(HAVE_CC),$(C_TARGET) $(C_TARGET_COV)) $(if $(HAVE_CLANG),$(C_TARGET_COV_GUARD)) \
	$(if $(HAVE_CARGO),adapters core)
	$(BIN)/python -m pytest -q

# A newcomer's first campaign: the model under every oracle, 30 s from the seed corpus.
fuzz: $(STAMP) $(if $(HAVE_CARGO),core)
	$(BIN)/vsock-fuzz fuzz --target reference --max-time 30 --corpus corpus/target --dict corpus/vsock.dict --out fuzz-out

# Every benchmark script with short budgets (about two minutes), figures printed;
# bench-full runs them with their own defaults (far longer: bench_fuzz's
# time-to-first-finding table alone is 99 campaigns of up to 60 s each).
# bench_gap: campaign exec/s against each device over its own pace, and the per-case breakdown.
# bench_target_cov: exec/s with and without the target's coverage and compare hints; in bench-full also the
# planted target-only bugs' time to first finding per mode and build (about an hour) and rust-vmm's.
# bench_root_causes (bench-full only, about 18 minutes): the root causes of a 60 s campaign against
# every zoo device and both rust-vmm adapters, in all and at error or above.
BENCH_DEPS := $(STAMP) $(if $(HAVE_CC),$(C_TARGET)) $(if $(HAVE_CARGO),adapters) $(if $(HAVE_CARGO),core)
bench: $(BENCH_DEPS)
	$(BIN)/python benchmarks/bench.py --quick
	$(BIN)/python benchmarks/corpus_bench.py
	$(BIN)/python benchmarks/bench_targets.py --quick
	$(BIN)/python benchmarks/bench_fuzz.py --quick
	$(BIN)/python benchmarks/bench_gap.py --quick
	$(BIN)/python benchmarks/bench_target_cov.py --skip-planted --magic-seconds 0 --heavy-seconds 0 --rust-seconds 0 \
		--pace-runs 5000

bench-full: $(BENCH_DEPS)
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/corpus_bench.py
	$(BIN)/python benchmarks/bench_targets.py
	$(BIN)/python benchmarks/bench_fuzz.py
	$(BIN)/python benchmarks/bench_gap.py
	$(BIN)/python benchmarks/bench_target_cov.py
	$(BIN)/python benchmarks/bench_root_causes.py

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
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis/tmp htmlcov .coverage-fuzz coverage.json core/target
	rm -f $(C_TARGET) $(C_TARGET_COV) $(C_TARGET_COV_GUARD)
