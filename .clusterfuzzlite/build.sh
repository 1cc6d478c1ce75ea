#!/bin/bash -eu
# Build every harnesses/fuzz_*.py the way OSS-Fuzz builds atheris fuzzers, each with
# its seed corpus ($OUT/<fuzzer>_seed_corpus.zip from corpus/<name without fuzz_>)
# and the libFuzzer dictionary ($OUT/<fuzzer>.dict, picked up automatically).
# Runs in $SRC/vsock-fuzz (the Dockerfile's WORKDIR).
#
# The device fuzz_target drives: VSOCK_FUZZ_TARGET, when set as the image builds
# (the Dockerfile's `ENV VSOCK_FUZZ_TARGET=cmd:/out/vsock-adapter`, the adapter built
# into $OUT by a build step of your own before this script runs), is baked into
# fuzz_target as its default target; unset, fuzz_target fuzzes the reference model.
# A VSOCK_FUZZ_TARGET set when the fuzzer runs still wins. The fuzzers do not run
# from the $OUT they were built in (ClusterFuzzLite builds into <workspace>/build-out,
# not /out), so a word of the cmd: line under /out/ or $OUT/ is looked for beside
# the fuzzer when it runs (.clusterfuzzlite/cflite_baked_target.py).

# The package without its pinned atheris (the image brings its own build of it),
# then the other runtime dependency at its pinned version.
pip3 install --no-deps .
pip3 install "$(grep -o '"hypothesis==[^"]*"' pyproject.toml | tr -d '"')"

json() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }  # a Python str literal

for harness in harnesses/fuzz_*.py; do
  fuzzer=$(basename "$harness" .py)
  if [ "$fuzzer" = fuzz_target ] && [ -n "${VSOCK_FUZZ_TARGET:-}" ]; then
    mkdir -p "$WORK/baked"
    cp .clusterfuzzlite/cflite_baked_target.py "$WORK/baked/"
    { head -n 1 "$harness"
      echo "import cflite_baked_target; cflite_baked_target.BUILD_OUT = $(json "$OUT");" \
           "cflite_baked_target.setdefault(\"VSOCK_FUZZ_TARGET\", $(json "$VSOCK_FUZZ_TARGET"))" \
           " # baked in by .clusterfuzzlite/build.sh"
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
