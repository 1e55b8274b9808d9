#!/usr/bin/env bash
# One command for a GPU machine (issue 14): the parity tests on `cuda` and `vulkan`, the
# training-step bench (default config, batch 32 and 8) and the inference bench, with
# iterations/s, peak GPU memory and an MFU estimate.
#
# A GPU machine lent through the `device` tool has no network and takes at most 64 MiB of
# carried files, so the build happens here and travels as one compressed bundle:
#
#   scripts/gpu-check.sh prepare   # here: build (cuda + vulkan), strip, bundle -> gpu-bundle/
#   scripts/gpu-check.sh run       # there, in the repo root with gpu-bundle/ carried
#
# `prepare` needs the LLVM tree of scripts/cuda-build-deps.sh. The bundle holds the `sg2im`
# binary, the test binaries (torch_parity, gpu_path, run_cli), the two benches and the fixtures
# they read; identical LLVM copies in the binaries compress away with zstd's long-range mode.
# `run` puts them back where the binaries expect them (paths compiled in at build time) and runs
# everything; it needs the NVIDIA driver (CUDA, and its Vulkan ICD for `vulkan`) and a Vulkan
# loader (libvulkan.so.1; the device README says how to carry one if missing).
#
# Environment: SG2IM_PEAK_TFLOPS (peak FP32 TFLOP/s for the MFU; guessed from the GPU's name
# when unset), GPU_CHECK_TARGET (default target, sharing the ordinary build's dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd -P)"
target="${GPU_CHECK_TARGET:-target}"
bundle=gpu-bundle

prepare() {
  scripts/cuda-build-deps.sh
  local features=cuda,vulkan
  export CARGO_TARGET_DIR="$target"
  echo "building --features $features into $target"
  cargo build --release --features "$features" --bin sg2im
  local list="$target/gpu-check-binaries.txt"
  { cargo test --release --features "$features" --no-run --message-format=json \
      --test torch_parity --test gpu_path --test run_cli
    cargo bench --features "$features" --no-run --message-format=json \
      --bench train_step --bench inference
  } | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])
' | sort -u >"$list"
  rm -rf "$bundle" "$target/bundle"
  mkdir -p "$bundle" "$target/bundle/bin" "$target/bundle/shared/fixtures" \
    "$target/bundle/shared/reference/data/scene_graphs"
  echo "sg2im $target/release/sg2im" >>"$list"
  : >"$target/bundle/manifest.txt"
  while read -r name exe; do
    cp "$exe" "$target/bundle/bin/$name"
    strip "$target/bundle/bin/$name"
    # Where the test binaries look for the `sg2im` binary (CARGO_BIN_EXE_sg2im) and what the
    # name is, relative to the build's root.
    echo "$name ${exe#"$root"/}" >>"$target/bundle/manifest.txt"
  done <"$list"
  echo "$root" >"$target/bundle/build-root.txt"
  cp -r ../shared/fixtures/torch_parity "$target/bundle/shared/fixtures/"
  cp ../shared/reference/data/scene_graphs/figure_6_sheep.json \
    "$target/bundle/shared/reference/data/scene_graphs/"
  du -b "$target"/bundle/bin/* | awk '{printf "%8.1f MB stripped  %s\n", $1 / 1e6, $2}'
  tar -C "$target/bundle" -cf - . | zstd -19 --long=31 -T0 -q -o "$bundle/bundle.tar.zst"
  local size
  size=$(stat -c %s "$bundle/bundle.tar.zst")
  printf 'bundle: %s (%.1f MiB; the carry limit is 64 MiB)\n' "$bundle/bundle.tar.zst" \
    "$(echo "$size / 1048576" | bc -l)"
  if [ "$size" -gt $((60 * 1048576)) ]; then
    echo "warning: the bundle leaves under 4 MiB for the rest of the working tree" >&2
  fi
  echo "carry it: device run with carry [\"$bundle\"] and command 'scripts/gpu-check.sh run'"
}

run() {
  [ -f "$bundle/bundle.tar.zst" ] || { echo "error: $bundle/bundle.tar.zst missing (scripts/gpu-check.sh prepare)" >&2; exit 2; }
  local work=/tmp/sg2im-gpu-check
  rm -rf "$work"
  mkdir -p "$work"
  zstd -d --long=31 -q -c "$bundle/bundle.tar.zst" | tar -C "$work" -xf -
  # The binaries carry the build machine's absolute paths (fixtures at <root>/../shared, the
  # `sg2im` binary under <root>/target): recreate that root here as a link to this repo.
  local build_root
  build_root="$(cat "$work/build-root.txt")"
  if [ "$build_root" != "$root" ]; then
    mkdir -p "$(dirname "$build_root")"
    rm -rf "$build_root"
    ln -s "$root" "$build_root"
  fi
  mkdir -p "$(dirname "$root")/shared"
  cp -r "$work/shared/." "$(dirname "$root")/shared/"
  while read -r name rel; do
    mkdir -p "$(dirname "$root/$rel")"
    cp "$work/bin/$name" "$root/$rel"
    chmod +x "$root/$rel"
  done <"$work/manifest.txt"
  bin() { awk -v n="$1" '$1 == n {print $2}' "$work/manifest.txt"; }

  local gpu peak
  gpu="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "== GPU: $gpu"
  # Dense FP32 (CUDA cores, no tensor cores) peaks, for the MFU estimate.
  case "$gpu" in
    *H200* | *H100*SXM* | *"H100 80GB HBM3"*) peak=67 ;;
    *H100*) peak=51 ;;
    *A100*) peak=19.5 ;;
    *L40S*) peak=91.6 ;;
    *) peak="" ;;
  esac
  export SG2IM_PEAK_TFLOPS="${SG2IM_PEAK_TFLOPS:-$peak}"
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
  chmod 700 "$XDG_RUNTIME_DIR"

  # Peak GPU memory over the whole check, sampled every 200 ms.
  local smi_log=/tmp/sg2im-gpu-check-memory.csv
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$smi_log" 2>/dev/null &
  local smi=$!
  local status=0
  for dev in cuda vulkan; do
    echo "== parity and GPU-path tests on $dev"
    for t in torch_parity gpu_path run_cli; do
      SG2IM_TEST_DEVICE=$dev "$root/$(bin "$t")" --test-threads=1 || status=1
    done
  done
  for dev in cuda vulkan; do
    echo "== train_step bench on $dev (default config, batch 32 and 8)"
    SG2IM_BENCH_DEVICE=$dev "$root/$(bin train_step)" "(a)" || status=1
    echo "== inference bench on $dev"
    SG2IM_BENCH_DEVICE=$dev "$root/$(bin inference)" || status=1
  done
  kill "$smi" 2>/dev/null || true
  wait "$smi" 2>/dev/null || true
  echo "== peak GPU memory used (nvidia-smi, whole check): $(sort -n "$smi_log" | tail -1) MiB"
  [ "$status" = 0 ] && echo "== GPU check passed" || echo "== GPU check FAILED (see above)"
  return "$status"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
