#!/usr/bin/env bash
# Provisions the LLVM tree that `cargo build --features cuda` needs, without the download that
# Burn's build would otherwise attempt.
#
# Why: burn 0.22.1 `cuda` -> cubecl-cuda 0.11 -> cubecl-llvm, whose build dependency
# tracel-llvm-bundler (23.1.0-4) downloads an LLVM bundle in its build script unless the marker
# `${XDG_DATA_HOME:-~/.local/share}/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed` exists;
# cubecl-llvm then links through that directory's `bin/llvm-config`. PyPI's static LLVM 23.1
# build (the base wheel plus its extra-targets wheel, which adds NVPTX) is a drop-in tree for
# that directory: its `llvm-config` is a Python 3 script reading the tree's own JSON metadata.
#
# Pinned (versions and SHA-256), idempotent (does nothing when the tree is already in place and
# its llvm-config answers), atomic (the tree is assembled beside the target and renamed), and the
# only network it uses is PyPI through pip. Needs: python3 with pip, unzip.
#
# Usage: scripts/cuda-build-deps.sh && cargo build --release --features cuda
set -euo pipefail

LLVM_VERSION=23.1.1.post0
BASE_SHA256=dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5
EXTRA_SHA256=c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929
# The directory name tracel-llvm-bundler 23.1.0-4 looks for (its crate version, not LLVM's).
BUNDLE=tracel-llvm-23.1.0-4

dest="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/$BUNDLE"
marker="$dest/.tracel-llvm-installed"

case "$(uname -sm)" in
  "Linux x86_64") ;;
  *) echo "error: cuda-build-deps.sh: only Linux x86_64 wheels are pinned (this is $(uname -sm))" >&2; exit 2 ;;
esac
for tool in python3 unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "error: cuda-build-deps.sh: '$tool' not found" >&2; exit 2; }
done

if [ -e "$marker" ] && "$dest/bin/llvm-config" --version >/dev/null 2>&1 \
   && "$dest/bin/llvm-config" --targets-built | grep -qw NVPTX; then
  echo "LLVM $("$dest/bin/llvm-config" --version) already in $dest"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/cuda-build-deps.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "downloading mlc-llvm-static $LLVM_VERSION (+ extra targets) from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.10 --implementation py \
  -d "$work/wheels" \
  "mlc-llvm-static==$LLVM_VERSION" "mlc-llvm-static-extra-targets==$LLVM_VERSION"

check() {
  local file="$1" want="$2" got
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    echo "error: cuda-build-deps.sh: $(basename "$file"): sha256 $got, expected $want" >&2
    exit 1
  fi
}
check "$work/wheels/mlc_llvm_static-$LLVM_VERSION-py3-none-manylinux_2_28_x86_64.whl" "$BASE_SHA256"
check "$work/wheels/mlc_llvm_static_extra_targets-$LLVM_VERSION-py3-none-manylinux_2_28_x86_64.whl" "$EXTRA_SHA256"

# Both wheels unpack into mlc_llvm_static/static/ (the extra one adds libraries and extra.json).
for whl in "$work"/wheels/*.whl; do
  unzip -q -o "$whl" 'mlc_llvm_static/static/*' -d "$work/unpacked"
done
tree="$work/unpacked/mlc_llvm_static/static"
chmod +x "$tree/bin/llvm-config"
"$tree/bin/llvm-config" --targets-built | grep -qw NVPTX || {
  echo "error: cuda-build-deps.sh: the unpacked LLVM has no NVPTX target" >&2
  exit 1
}

mkdir -p "$(dirname "$dest")"
staging="$dest.staging.$$"
rm -rf "$staging"
mkdir "$staging"
mv "$tree"/bin "$tree"/include "$tree"/lib "$tree"/share "$staging"/
touch "$staging/.tracel-llvm-installed"
rm -rf "$dest"
mv "$staging" "$dest"
echo "LLVM $("$dest/bin/llvm-config" --version) installed in $dest"
