#!/bin/sh
# Build tvmq_runner against a TVM runtime for the machine it will run on.
#
#   RUNTIME=DIR [CXX=g++] [OUT=./tvmq_runner] sh build.sh
#
# RUNTIME holds tvm/{include,lib} and tvm_ffi/{include,lib} as in the apache-tvm and
# apache-tvm-ffi wheels: a site-packages folder where they are pip-installed, or the wheels
# unzipped. On an x86 workstation, CXX=aarch64-linux-gnu-g++ with the aarch64 wheels' RUNTIME
# cross-compiles the runner for an ARM board; copy libtvm_runtime.so and libtvm_ffi.so into a
# lib/ folder beside it there (or set LD_LIBRARY_PATH).
set -eu
: "${RUNTIME:?set RUNTIME to the folder holding tvm/ and tvm_ffi/ (see the comment at the top)}"
CXX="${CXX:-g++}"
here="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$here/tvmq_runner}"
# --no-as-needed: the runtime registers the VM loader that model.so needs, so it must be
# loaded even though the runner itself calls little of it.
exec "$CXX" -std=c++17 -O2 -o "$OUT" "$here/tvmq_runner.cc" \
    -I"$RUNTIME/tvm/include" -I"$RUNTIME/tvm_ffi/include" \
    -L"$RUNTIME/tvm/lib" -L"$RUNTIME/tvm_ffi/lib" \
    -Wl,--no-as-needed -ltvm_runtime -ltvm_ffi -Wl,--as-needed \
    -Wl,-rpath-link,"$RUNTIME/tvm_ffi/lib" \
    -Wl,-rpath,'$ORIGIN/lib' -Wl,-rpath,"$RUNTIME/tvm/lib" -Wl,-rpath,"$RUNTIME/tvm_ffi/lib"
