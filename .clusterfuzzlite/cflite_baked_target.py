"""fuzz_target's default target, as .clusterfuzzlite/build.sh bakes it in.

build.sh copies this module beside the harness it bakes and adds one line to it:

    import cflite_baked_target; cflite_baked_target.BUILD_OUT = "..."; cflite_baked_target.setdefault("VSOCK_FUZZ_TARGET", "SPEC")

A built fuzzer does not run where it was built: ClusterFuzzLite builds with
OUT=<workspace>/build-out and runs the fuzzers from there, or from a previous build
it downloaded elsewhere; ClusterFuzz runs them wherever it unpacked the build. A
Dockerfile's ENV can only name the image's /out (base-builder's OUT). So each word of a
`cmd:` line under /out/ or under the $OUT the build ran with names a file of the build
output, and is looked for beside the fuzzer when it runs.
"""

import os
import shlex
import sys

BUILD_OUT = "/out"  # the $OUT the build ran with; build.sh sets it


def setdefault(name: str, spec: str) -> None:
    """os.environ.setdefault(name, spec rebased): a VSOCK_FUZZ_TARGET set when the fuzzer
    runs still wins."""
    os.environ.setdefault(name, rebased(spec))


def rebased(spec: str) -> str:
    # Only pyinstaller's binary sits in the build output (its sys.executable is the binary,
    # not an interpreter); the baked harness run as a script keeps the spec as it is.
    if not getattr(sys, "frozen", False) or not spec.startswith("cmd:"):
        return spec
    try:
        words = shlex.split(spec[len("cmd:"):])
    except ValueError:
        return spec  # open_target says what is wrong with it
    here = os.path.dirname(os.path.abspath(sys.executable))
    outs = sorted({"/out", BUILD_OUT.rstrip("/")} - {""}, key=len, reverse=True)  # the deeper first
    for i, word in enumerate(words):
        out = next((d for d in outs if word.startswith(d + "/")), None)
        if out is not None:
            words[i] = here + word[len(out):]
    return "cmd:" + shlex.join(words)
