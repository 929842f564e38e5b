#!/usr/bin/env bash
# Install the peers that benchmarks/peers.py compares jaxnmr with (Mitsuba 3 + Dr.Jit, jaxrenderer 0.3.2).
#
#   bash benchmarks/install_peers.sh            # uses ${PYTHON:-python3}
#   JAXNMR_PEERS_DIR=/some/dir bash benchmarks/install_peers.sh
#
# * Python packages from requirements-peers.txt go into their own directory ($JAXNMR_PEERS_DIR, default
#   ~/.cache/jaxnmr/peers) with --no-deps, so the environment's jax/numpy are never downgraded (jaxrenderer
#   0.3.2 declares jax<0.5, numpy<2). peers.py finds that directory by the same rule.
# * Mitsuba's LLVM backend needs Debian's libllvm19 (apt-get; needs root or sudo).
# Idempotent: already-present pieces are skipped. Each failure is reported and the script goes on; it exits
# non-zero if anything could not be installed (peers.py then skips that peer with a reason).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
PEERS_DIR="${JAXNMR_PEERS_DIR:-$HOME/.cache/jaxnmr/peers}"
REQ="$here/requirements-peers.txt"
failed=()

# 1. System LLVM for Dr.Jit's LLVM backend.
llvm19_present() {
  local f
  for f in /usr/lib/*/libLLVM-19.so* /usr/lib/*/libLLVM.so.19* /usr/lib/llvm-19/lib/libLLVM*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if llvm19_present; then
  echo "[peers] libllvm19: already installed"
else
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "[peers] ERROR: libllvm19 missing and apt-get not available: install LLVM 19's shared library by hand" \
         "and set DRJIT_LIBLLVM_PATH to it (LLVM 14 is rejected by Dr.Jit, LLVM 15 crashes its kernels)." >&2
    failed+=("libllvm19")
  else
    echo "[peers] installing libllvm19 with apt-get"
    if ! { $SUDO apt-get install -y libllvm19 || { $SUDO apt-get update && $SUDO apt-get install -y libllvm19; }; }
    then
      echo "[peers] ERROR: 'apt-get install libllvm19' failed (Debian 12 'bookworm' and later have it; older" \
           "releases need backports or apt.llvm.org). Mitsuba will be skipped." >&2
      failed+=("libllvm19")
    fi
  fi
fi

# 2. Python peers, isolated from the environment's own packages.
missing="$(PYTHONPATH="$PEERS_DIR" "$PYTHON" - "$REQ" <<'PY'
import sys
from importlib import metadata
want = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    try:
        ok = metadata.version(name) == version
    except metadata.PackageNotFoundError:
        ok = False
    if not ok:
        want.append(line)
print(" ".join(want))
PY
)"
if [ -z "$missing" ]; then
  echo "[peers] Python peers: already installed in $PEERS_DIR"
else
  echo "[peers] installing into $PEERS_DIR: $missing"
  mkdir -p "$PEERS_DIR"
  if ! "$PYTHON" -m pip install --no-deps --upgrade --target "$PEERS_DIR" -r "$REQ"; then
    echo "[peers] ERROR: pip could not install $REQ into $PEERS_DIR (no network or no wheel for this" \
         "platform/Python?). The missing peers will be skipped by peers.py." >&2
    failed+=("python peers")
  fi
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "[peers] done, with failures: ${failed[*]}" >&2
  exit 1
fi
echo "[peers] done. Run: python3 benchmarks/peers.py"
