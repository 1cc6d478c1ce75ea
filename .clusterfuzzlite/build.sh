#!/bin/bash -eu
# Build every harnesses/fuzz_*.py the way OSS-Fuzz builds atheris fuzzers, each with
# its seed corpus ($OUT/<fuzzer>_seed_corpus.zip from corpus/<name without fuzz_>)
# and the libFuzzer dictionary ($OUT/<fuzzer>.dict, picked up automatically).
# Runs in $SRC/vsock-fuzz (the Dockerfile's WORKDIR).
#
# The device fuzz_target drives: VSOCK_FUZZ_TARGET, when set as the image builds
# (the Dockerfile's `ENV VSOCK_FUZZ_TARGET=cmd:/out/vsock-adapter`, the adapter built
# and copied into $OUT before this script runs, or by a build step of your own), is
# baked into fuzz_target as its default target; unset, fuzz_target fuzzes the
# reference model. A VSOCK_FUZZ_TARGET set when the fuzzer runs still wins.

# The package without its pinned atheris (the image brings its own build of it),
# then the other runtime dependency at its pinned version.
pip3 install --no-deps .
pip3 install "$(grep -o '"hypothesis==[^"]*"' pyproject.toml | tr -d '"')"

for harness in harnesses/fuzz_*.py; do
  fuzzer=$(basename "$harness" .py)
  if [ "$fuzzer" = fuzz_target ] && [ -n "${VSOCK_FUZZ_TARGET:-}" ]; then
    mkdir -p "$WORK/baked"
    spec=$(python3 -c 'import json, os; print(json.dumps(os.environ["VSOCK_FUZZ_TARGET"]))')
    { head -n 1 "$harness"
      echo "import os; os.environ.setdefault(\"VSOCK_FUZZ_TARGET\", $spec)  # baked in by .clusterfuzzlite/build.sh"
      tail -n +2 "$harness"; } > "$WORK/baked/$fuzzer.py"
    harness=$WORK/baked/$fuzzer.py
  fi
  compile_python_fuzzer "$harness"
  seeds=corpus/${fuzzer#fuzz_}
  if [ -d "$seeds" ]; then
    (cd "$seeds" && zip -q -r "$OUT/${fuzzer}_seed_corpus.zip" .)
  fi
  cp corpus/vsock.dict "$OUT/$fuzzer.dict"
done
