#!/usr/bin/env bash
# Installs what the test suite needs besides Rust, then exits; idempotent (each step is skipped
# when its tool already works). Debian, as root (CI and this project's machines are both):
#   - GraphViz `dot`: `run --draw_scene_graphs 1` renders real pictures in tests/run_cli.rs;
#   - Python 3 with venv, and target/pyenv with h5py + numpy (the versions the fixtures were made
#     with): tests/interop.rs reads our HDF5 / .pt output with the real tools;
#   - headless Chromium and chromedriver: tests/serve_browser.rs drives the studio page.
# Usage (the README's test command): scripts/install-test-deps.sh && cargo test --release
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dot >/dev/null || need+=(graphviz)
{ command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null; } \
  || need+=(python3 python3-venv)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: the tests need these Debian packages: ${need[*]} (install them as root with apt-get)" >&2
    exit 1
  fi
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
dot -V 2>&1
chromium --version
chromedriver --version

# The interpreter tests/common/mod.rs looks for first (`python()`); 10-25 s from PyPI.
if ! target/pyenv/bin/python -c 'import h5py, numpy' 2>/dev/null; then
  rm -rf target/pyenv
  python3 -m venv target/pyenv
  target/pyenv/bin/pip install --quiet --disable-pip-version-check h5py==3.16.0 numpy==2.4.6
fi
target/pyenv/bin/python -c 'import h5py, numpy; print("h5py", h5py.__version__, "numpy", numpy.__version__)'
