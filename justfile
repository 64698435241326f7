# vaelab: `just sweep FILE` (next issue), `just run FILE`, `just test`, `just bench`.
set shell := ["bash", "-euo", "pipefail", "-c"]

# One target folder outside the clone, reused by CI and by every checkout on this machine.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") / ".cache/vaelab-target")

default:
    @just --list

# Make sure Fashion-MNIST is on disk: installs Debian's `dataset-fashion-mnist` where apt exists.
data:
    #!/usr/bin/env bash
    set -euo pipefail
    dir=/usr/share/datasets/fashion-mnist
    if [ -f "$dir/train-images-idx3-ubyte.gz" ] || [ -f "$dir/train-images-idx3-ubyte" ]; then exit 0; fi
    if ! command -v apt-get >/dev/null; then
        echo "no apt-get here: set data_dir in your run file to a folder of Fashion-MNIST IDX files, or let vaelab fetch it through hf-hub" >&2
        exit 0
    fi
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y dataset-fashion-mnist || { $sudo apt-get update && $sudo apt-get install -y dataset-fashion-mnist; }

# Train one run from a TOML file (results in results/<name>/).
run FILE *ARGS: data
    cargo run --quiet -p vaelab -- run {{FILE}} {{ARGS}}

# Every test: units next to the code, end-to-end tests in tests/ on real (small) data.
test:
    #!/usr/bin/env bash
    set -euo pipefail
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi

# Epoch seconds and images/s of the classic 784-400-20 VAE on Fashion-MNIST, 1 and 2 threads.
bench EPOCHS="3": data
    cargo build --quiet -p vaelab --bins
    RAYON_NUM_THREADS=1 "$CARGO_TARGET_DIR/debug/vaelab-bench" --epochs {{EPOCHS}}
    RAYON_NUM_THREADS=2 "$CARGO_TARGET_DIR/debug/vaelab-bench" --epochs {{EPOCHS}}

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
