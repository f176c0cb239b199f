#!/usr/bin/env bash
# Installs the llama.cpp used by the conformance test (ctest label "llamacpp"): the npm package
# node-llama-cpp at the version pinned in tests/llamacpp/package-lock.json, whose prebuilt CPU
# libraries are llama.cpp itself. Needs node and npm (Debian packages nodejs npm; `make
# llamacpp-deps` installs them). When npm or its registry is unreachable this prints a loud
# warning and exits 0: the conformance test then skips with a message saying why.
set -uo pipefail
cd "$(dirname "$0")/../tests/llamacpp"

warn() {
  echo "" >&2
  echo "*** install-llamacpp: $* ***" >&2
  echo "*** the llama.cpp conformance test (ctest -L llamacpp) will be SKIPPED ***" >&2
  echo "" >&2
  exit 0
}

command -v node >/dev/null 2>&1 || warn "node is not installed (apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || warn "npm is not installed (apt-get install npm)"
stamp=node_modules/.moeq-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f node_modules/node-llama-cpp/package.json ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "install-llamacpp: node-llama-cpp $(node -p 'require("./node_modules/node-llama-cpp/package.json").version') present"
  exit 0
fi
echo "install-llamacpp: npm ci (node-llama-cpp pinned by tests/llamacpp/package-lock.json)"
# --ignore-scripts: the prebuilt binaries come as platform packages (@node-llama-cpp/linux-x64);
# node-llama-cpp's postinstall would only try to download or build llama.cpp when they are not.
if ! npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; then
  warn "npm ci failed (is the npm registry reachable?)"
fi
echo "$want" > "$stamp"
