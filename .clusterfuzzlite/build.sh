#!/bin/bash -eu
# Build every harnesses/fuzz_*.py the way OSS-Fuzz builds atheris fuzzers, each with
# its seed corpus ($OUT/<fuzzer>_seed_corpus.zip from corpus/<name without fuzz_>)
# and the libFuzzer dictionary ($OUT/<fuzzer>.dict, picked up automatically).
# Runs in $SRC/vsock-fuzz (the Dockerfile's WORKDIR).

# The package without its pinned atheris (the image brings its own build of it),
# then the other runtime dependency at its pinned version.
pip3 install --no-deps .
pip3 install "$(grep -o '"hypothesis==[^"]*"' pyproject.toml | tr -d '"')"

for harness in harnesses/fuzz_*.py; do
  fuzzer=$(basename "$harness" .py)
  compile_python_fuzzer "$harness"
  seeds=corpus/${fuzzer#fuzz_}
  if [ -d "$seeds" ]; then
    (cd "$seeds" && zip -q -r "$OUT/${fuzzer}_seed_corpus.zip" .)
  fi
  cp corpus/vsock.dict "$OUT/$fuzzer.dict"
done
