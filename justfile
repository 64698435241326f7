# vaelab: `just sweep FILE`, `just run FILE`, `just test`, `just bench`.
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

# Builds vaelab, showing cargo's progress (a first build compiles the dependencies: minutes).
build:
    cargo build -p vaelab --bin vaelab

# The CUDA 13.0 toolkit comes from NVIDIA's Python wheels (scripts/cuda-toolkit.sh): this
# compiles without a GPU; running the binary needs one (`--device cuda`, `gres = "gpu:1"`).
# Build vaelab with candle's CUDA backend into $CARGO_TARGET_DIR/cuda/vaelab.
build-cuda:
    #!/usr/bin/env bash
    set -euo pipefail
    eval "$(scripts/cuda-toolkit.sh)"
    cargo build -p vaelab --bin vaelab --features cuda
    mkdir -p "$CARGO_TARGET_DIR/cuda"
    cp "$CARGO_TARGET_DIR/debug/vaelab" "$CARGO_TARGET_DIR/cuda/vaelab"
    # Put the CPU build back where the other recipes and tests look for it.
    cargo build -p vaelab --bin vaelab
    echo "CUDA build: $CARGO_TARGET_DIR/cuda/vaelab (run it with LD_LIBRARY_PATH from scripts/cuda-toolkit.sh, or a cluster's CUDA 13 module)"

# Train every run of a sweep file in parallel (results in results/<sweep name>/); add
# `--backend slurm` to submit it to a Slurm cluster as a job array.
sweep FILE *ARGS: data build
    "$CARGO_TARGET_DIR/debug/vaelab" sweep {{FILE}} {{ARGS}}

# Redraw a sweep's figures and report.html from its Parquet tables and checkpoints.
report DIR: build
    "$CARGO_TARGET_DIR/debug/vaelab" report {{DIR}}

# Print the runs a sweep file expands to, without training.
plan FILE: build
    "$CARGO_TARGET_DIR/debug/vaelab" plan {{FILE}}

# Mean ± std over seeds of a sweep's final metrics, e.g. `just compare results/latent_dims latent_dim,model`.
compare DIR BY: build
    "$CARGO_TARGET_DIR/debug/vaelab" compare {{DIR}} --by {{BY}}

# Train one run from a TOML file (results in results/<name>/).
run FILE *ARGS: data build
    "$CARGO_TARGET_DIR/debug/vaelab" run {{FILE}} {{ARGS}}

# Each run of a sweep folder with its Slurm task's state, e.g. `just status results/smoke`.
status DIR: build
    "$CARGO_TARGET_DIR/debug/vaelab" status {{DIR}}

# System packages the tests need, where apt exists: the Fashion-MNIST package (`data`),
# Debian's headless Chromium for the report page test, and Slurm with munge for the Slurm tests.
test-deps: data
    #!/usr/bin/env bash
    set -euo pipefail
    missing=""
    command -v chromium >/dev/null || missing="$missing chromium"
    command -v sbatch >/dev/null || missing="$missing slurm-client"
    command -v slurmctld >/dev/null || missing="$missing slurmctld"
    command -v slurmd >/dev/null || missing="$missing slurmd"
    command -v munged >/dev/null || missing="$missing munge"
    [ -z "$missing" ] && exit 0
    if ! command -v apt-get >/dev/null; then
        echo "the tests need:$missing (or set VAELAB_CHROMIUM for the report test)" >&2
        exit 0
    fi
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends $missing \
        || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends $missing; }

# Every test: units next to the code, end-to-end tests in tests/ on real (small) data, the Slurm
# ones on a one-node Slurm that this recipe starts (scripts/local-slurm.sh) and stops.
test: test-deps
    #!/usr/bin/env bash
    set -euo pipefail
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -E"
    # MaxArraySize 5: a plan of more runs must be split into several arrays.
    eval "$($sudo env SLURM_LOCAL_MAX_ARRAY=5 scripts/local-slurm.sh start)"
    trap '$sudo scripts/local-slurm.sh stop' EXIT
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi

# Whole runs of the classic 784-400-20 VAE on Fashion-MNIST as the shipped sweeps run them
# (20 epochs, per-epoch tests, the final IWAE bound and gap split), 1 and 2 threads: every
# epoch's seconds, images/s and GFLOP/s, then the run's parts; the IWAE bound alone and with the
# 8-bit mass, a 4-run sweep under both dispatch strategies, and ns/pixel of every likelihood
# kernel (1 thread). Every report starts with the CPU's model and AVX-512 flags.
bench EPOCHS="20": data
    cargo build --quiet -p vaelab --bins
    RAYON_NUM_THREADS=1 "$CARGO_TARGET_DIR/debug/vaelab-bench" --pixel-kernels
    RAYON_NUM_THREADS=1 "$CARGO_TARGET_DIR/debug/vaelab-bench" --epochs {{EPOCHS}} --whole-run
    RAYON_NUM_THREADS=2 "$CARGO_TARGET_DIR/debug/vaelab-bench" --epochs {{EPOCHS}} --whole-run --iw-samples 1000 --sweep-runs 4

# A sweep file end to end with `vaelab sweep` (build excluded), its runs' seconds broken into
# training, per-epoch tests, IWAE and E-step, e.g. `just bench-sweep experiments/latent_dims.toml`.
bench-sweep FILE="experiments/latent_dims.toml": data
    cargo build --quiet -p vaelab --bins
    "$CARGO_TARGET_DIR/debug/vaelab-bench" --sweep-file {{FILE}}

# The search with and without its early stopping (README "Searching"): the file's [early_stop]
# into one folder, the same trials with --no-prune (judged by nothing) into another, each under
# /usr/bin/time, the CPU line first; then the epochs each trained and its best finished run.
bench-search FILE="experiments/search.toml": data build
    #!/usr/bin/env bash
    set -euo pipefail
    vaelab="$CARGO_TARGET_DIR/debug/vaelab"
    grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu family' /proc/cpuinfo; grep -m1 '^model\s' /proc/cpuinfo
    flags=$(grep -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)
    echo "avx512 flags: ${flags:-none}"
    out=$(mktemp -d)
    for mode in pruned full; do
        extra=""; [ "$mode" = full ] && extra="--no-prune"
        /usr/bin/time -f "$mode: %e s wall, %U s user, %S s sys, %M KB peak" \
            "$vaelab" sweep {{FILE}} --results-dir "$out/$mode" $extra 2>&1 | grep -E "trained|wall"
        dir=$(ls -d "$out/$mode"/*/)
        "$vaelab" query "$dir" "SELECT count(*) / 2 AS epochs_trained FROM metrics"
        "$vaelab" ls "$dir" --where "status = 'done'" --sort test_neg_elbo --limit 1
    done
    echo "folders: $out"

# Epoch seconds and GFLOP/s of the anchor's conv VAE (torch_vae.py --arch conv), 1 and 2 threads,
# then on 2 threads with each narrower conv kernel this CPU also runs (VAELAB_CONV_SIMD: avx2 as
# on an AVX2-only server, none for im2col + gemm).
bench-conv EPOCHS="3": data build
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --quiet -p vaelab --bins
    bench="$CARGO_TARGET_DIR/debug/vaelab-bench"
    RAYON_NUM_THREADS=1 "$bench" --conv --epochs {{EPOCHS}}
    RAYON_NUM_THREADS=2 "$bench" --conv --epochs {{EPOCHS}}
    for width in avx2 none; do
        VAELAB_CONV_SIMD=$width RAYON_NUM_THREADS=2 "$bench" --conv --epochs {{EPOCHS}} || echo "(VAELAB_CONV_SIMD=$width: not run here, see the line above)"
    done

# Wall time of one sweep under --backend local and --backend slurm, alternating, SITTINGS times
# (the cluster sbatch reaches, else the project's one-node Slurm, started here).
bench-slurm FILE="experiments/overhead.toml" SITTINGS="3": data build
    #!/usr/bin/env bash
    set -euo pipefail
    if ! timeout 10 sinfo >/dev/null 2>&1; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -E"
        eval "$($sudo scripts/local-slurm.sh start)"
    fi
    bin="$CARGO_TARGET_DIR/debug/vaelab"; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    for i in $(seq {{SITTINGS}}); do
        line="sitting $i:"
        for backend in local slurm; do
            start=$(date +%s.%N)
            "$bin" sweep {{FILE}} --backend "$backend" --results-dir "$tmp/$backend" >"$tmp/log" 2>&1 \
                || { cat "$tmp/log"; exit 1; }
            secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
            rm -rf "$tmp/$backend"
            line="$line $backend $secs s"
            if [ "$backend" = local ]; then local_secs=$secs; fi
        done
        echo "$line, slurm/local $(awk -v s="$secs" -v l="$local_secs" 'BEGIN { printf "%.3f", s / l }')"
    done

# The same, side by side with the PyTorch reference (needs a Python with torch in TORCH_PYTHON).
compare-torch:
    cargo build --quiet -p vaelab --bins
    python3 scripts/compare_torch.py --epochs 3 --iw --sweep 4

# IWAE k = 5 and 50 epochs and the two-layer model (latent_layers = [20, 10]) beside PyTorch's same losses (scripts/torch_bounds.py), one sitting (TORCH_PYTHON: a Python with torch).
# Load time and peak memory at CelebA's size (a generated dataset in a fake hf-hub cache): the
# decoded cache off, first and cached loads, a conv run and a 2-run sweep, per sitting.
bench-data SITTINGS="3":
    python3 scripts/bench_data.py --sittings {{SITTINGS}}

bench-bounds:
    cargo build --quiet -p vaelab --bins
    python3 scripts/compare_torch.py --objective iwae --train-samples 5 --epochs 3 --threads 1
    python3 scripts/compare_torch.py --objective iwae --train-samples 50 --epochs 2 --threads 1
    python3 scripts/compare_torch.py --latent-layers 20,10 --epochs 3 --threads 1,2

# No import circles between a crate's files, no cycle between the crates (tests/architecture.rs).
circles:
    cargo test --quiet -p vaelab --test architecture

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
