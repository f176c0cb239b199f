#!/usr/bin/env bash
# ctest package_consumer: installs the build tree into a temporary prefix, checks what was
# installed (tools, libraries, headers, configs, docs, CMake package), then builds and runs
# tests/consumer against that prefix with find_package(moeq).
# Usage: run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
for f in bin/moeq-analyze bin/moeq-quantize include/moeq/checkpoint/checkpoint.h include/moeq/base/build_info.h \
         share/moeq/configs/mint_grid.json share/doc/moeq/architecture.md lib/cmake/moeq/moeqConfig.cmake \
         lib/libmoeq_base.a; do
  [[ -e "$prefix/$f" ]] || { echo "package_consumer: $f was not installed"; exit 1; }
done
# The installed tools never read the source tree: the default grid is compiled in.
"$prefix/bin/moeq-analyze" --version
cmake -S "$src/tests/consumer" -B "$tmp/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_BUILD_TYPE=Release > "$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" > "$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
out=$("$tmp/build/moeq_consumer" "$src/models/tiny-qwen3moe")
echo "$out"
[[ "$out" == *"qwen3_moe, 4 layers"* ]] || { echo "package_consumer: unexpected output"; exit 1; }
