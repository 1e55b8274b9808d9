#!/usr/bin/env bash
# CI's GPU-path step (issue 14): the GPU code path on Mesa's lavapipe, a Vulkan driver that runs
# on the CPU, so that every CI run exercises it without a GPU.
#
# 1. Installs lavapipe when missing: Mesa 25 from Debian 12's bookworm-backports (22.3 from
#    bookworm would do for WGSL too, but 25 is what was verified). Needs root and apt.
# 2. Builds with `--features wgpu` (Burn's WGSL path; cubecl's SPIR-V path, `--features vulkan`,
#    crashes lavapipe's pipeline compiler, see src/device.rs).
# 3. Runs the GPU-path tests on that device (SG2IM_TEST_DEVICE=wgpu): the torch parity tests
#    (eval outputs of all four checkpoints, train-mode losses and gradients), `sg2im run` against
#    the fixture, a few training iterations with an exact resume, and the no-GPU error.
#
# Debian-specific (apt); on other systems install a Vulkan loader and lavapipe and set
# SG2IM_LAVAPIPE_ICD to its ICD file. Usage: scripts/ci-gpu-path.sh (from anywhere).
set -euo pipefail
cd "$(dirname "$0")/.."

icd="${SG2IM_LAVAPIPE_ICD:-/usr/share/vulkan/icd.d/lvp_icd.json}"
mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
if [ ! -e "$icd" ] || ! dpkg --compare-versions "$(mesa_version)" ge 25; then
  echo "installing lavapipe (mesa-vulkan-drivers from bookworm-backports)"
  src=/etc/apt/sources.list.d/debian-backports.sources
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The same archive (and signing key) as the system's own Debian source.
    uri="$(awk '/^URIs:/ && /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    cat >"$src" <<EOF
Types: deb
URIs: ${uri:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports \
    mesa-vulkan-drivers libvulkan1 >/dev/null
fi
[ -e "$icd" ] || { echo "error: no lavapipe ICD at $icd" >&2; exit 1; }

export VK_ICD_FILENAMES="$icd"
# The Vulkan loader and Mesa want a private runtime directory.
XDG_RUNTIME_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sg2im-xdg.XXXXXX")"
chmod 700 "$XDG_RUNTIME_DIR"
export XDG_RUNTIME_DIR
trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT
export SG2IM_TEST_DEVICE=wgpu

start=$(date +%s)
cargo build --release --features wgpu --bins --tests
echo "GPU path: build $(($(date +%s) - start)) s"
start=$(date +%s)
cargo test --release --features wgpu --test gpu_path --test torch_parity --test run_cli
echo "GPU path: tests on lavapipe $(($(date +%s) - start)) s"
