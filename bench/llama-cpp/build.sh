#!/usr/bin/env bash
# Builds llama.cpp's CPU tools (llama-bench, llama-quantize, test-backend-ops) from the llama.cpp
# vendored in a pinned llama-cpp-python source package from PyPI, checked by sha256, into a cache
# outside git, and ggml-mulmat.c (beside this script) against its ggml. Idempotent: a finished
# build is reused (ggml-mulmat is rebuilt when its source is newer). Prints the bin directory on
# its last line.
#   bench/llama-cpp/build.sh            # build (or reuse) and print the bin dir
# Env: ANY4_LLAMA_CPP_CACHE (default ~/.cache/any4-llama.cpp), JOBS (default 2).
set -euo pipefail
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
url=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$version.tar.gz
cache=${ANY4_LLAMA_CPP_CACHE:-$HOME/.cache/any4-llama.cpp}/$version
jobs=${JOBS:-2}
tools=(llama-bench llama-quantize test-backend-ops)
bin=$cache/build/bin
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ggml-mulmat: test-backend-ops' MUL_MAT at a chosen thread count, linked against the static ggml.
build_mulmat() {
    if [[ ! -x $bin/ggml-mulmat || $here/ggml-mulmat.c -nt $bin/ggml-mulmat ]]; then
        local libs=$cache/build/ggml/src
        cc -O2 -march=native -I "$src/ggml/include" "$here/ggml-mulmat.c" -o "$bin/ggml-mulmat.part" \
            "$libs/libggml.a" "$libs/libggml-cpu.a" "$libs/libggml-base.a" -fopenmp -lstdc++ -lm -lpthread
        mv "$bin/ggml-mulmat.part" "$bin/ggml-mulmat"
    fi
}

src=$cache/src
if [[ -f $cache/.built ]]; then
    build_mulmat
    echo "$bin"
    exit 0
fi
command -v cmake >/dev/null || { echo "build.sh: cmake is missing (apt-get install -y cmake)" >&2; exit 2; }
mkdir -p "$cache"
tarball=$cache/llama_cpp_python-$version.tar.gz
if [[ ! -f $tarball ]]; then
    curl -sSfL -o "$tarball.part" "$url"
    mv "$tarball.part" "$tarball"
fi
echo "$sha256  $tarball" | sha256sum -c --quiet - || { echo "build.sh: $tarball: sha256 mismatch" >&2; exit 2; }
if [[ ! -f $src/CMakeLists.txt ]]; then
    rm -rf "$src" "$cache/unpack"
    mkdir -p "$cache/unpack"
    tar xzf "$tarball" -C "$cache/unpack" "llama_cpp_python-$version/vendor/llama.cpp"
    mv "$cache/unpack/llama_cpp_python-$version/vendor/llama.cpp" "$src"
    rm -rf "$cache/unpack"
fi
# CPU only, this machine's instruction set (as any4's kernels), static, no network features.
cmake -S "$src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF >"$cache/cmake.log" 2>&1 \
    || { tail -20 "$cache/cmake.log" >&2; exit 1; }
cmake --build "$cache/build" -j "$jobs" --target "${tools[@]}" >"$cache/build.log" 2>&1 \
    || { tail -30 "$cache/build.log" >&2; exit 1; }
build_mulmat
touch "$cache/.built"
echo "$bin"
