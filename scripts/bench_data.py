#!/usr/bin/env python3
"""Load time and peak memory at CelebA's size, without the network (`just bench-data`).

Writes a CelebA-sized dataset into a fake hf-hub cache once (162,770 + 19,962 smooth random
64x64 RGB JPEGs, `cargo run -p vaelab-data --features fixtures --example fake_celeba`), then,
for each sitting, times whole `vaelab` processes as a user runs them and reads each one's peak
RSS from the kernel (wait4):

- load: a run that trains 64 images, so the process is mostly the dataset's load:
  with the decoded cache off, the first load (decode + cache write), and a cached load (map);
- conv: one epoch of a 64x64 conv VAE (channels 32-64-128-256, latent 128) on 2,000 images;
- sweep: two such runs at once (`vaelab sweep`, 2 jobs), cached.

Prints the CPU (family, model, AVX-512 flags) beside the figures. `--vs BINARY` times another
vaelab build the same way in the same sitting (an older one ignores the cache).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

TINY = """name = "tiny"
dataset = "hub:fake/celeba"
hidden = [8]
latent_dim = 2
epochs = 1
train_subset = 64
test_subset = 64
iw_test_n = 0
gap_test_n = 0
"""

CONV = """dataset = "hub:fake/celeba"
architecture = "conv"
channels = [32, 64, 128, 256]
latent_dim = 128
epochs = 1
train_subset = 2000
test_subset = 500
iw_samples = 10
iw_test_n = 50
gap_test_n = 0
"""


def cpu_line():
    info = {}
    flags = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key in ("model name", "cpu family", "model") and key not in info:
                info[key] = value
            if key == "flags" and not flags:
                flags = [f for f in value.split() if f.startswith("avx512")]
    except OSError:
        return "CPU unknown (no /proc/cpuinfo)"
    avx512 = " ".join(flags) if flags else "no avx512"
    return (f"CPU {info.get('model name', '?')} (family {info.get('cpu family', '?')} "
            f"model {info.get('model', '?')}), {avx512}, {os.cpu_count()} cores")


def timed(cmd, env):
    """Wall seconds and peak RSS (MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.decode(errors='replace')}")
    return secs, usage.ru_maxrss / 1024


def rows(vaelab, work, env):
    """One sitting of one binary: each figure's line."""
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    out = []
    for label, cache_env, file, verb in [
        ("load, no cache", "off", "tiny.toml", "run"),
        ("load, first (decode + write)", str(cache), "tiny.toml", "run"),
        ("load, cached (map)", str(cache), "tiny.toml", "run"),
        ("conv epoch run, cached", str(cache), "conv.toml", "run"),
        ("2-run conv sweep, cached", str(cache), "sweep.toml", "sweep"),
    ]:
        results = work / "results"
        shutil.rmtree(results, ignore_errors=True)
        cmd = [vaelab, verb, str(work / file), "--results-dir", str(results)]
        secs, rss = timed(cmd, dict(env, VAELAB_CACHE_DIR=cache_env))
        out.append(f"{label}: {secs:.2f} s, peak RSS {rss:.0f} MB")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sittings", type=int, default=3)
    ap.add_argument("--vs", help="another vaelab binary, timed in the same sittings")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "vaelab-fake-celeba",
                    help="the fake hf-hub cache (written once, reused)")
    args = ap.parse_args()
    if not (args.data / "datasets--fake--celeba").is_dir():
        subprocess.run(["cargo", "run", "--quiet", "-p", "vaelab-data", "--features", "fixtures",
                        "--example", "fake_celeba", "--", str(args.data)], check=True, cwd=ROOT)
    subprocess.run(["cargo", "build", "--quiet", "-p", "vaelab", "--bin", "vaelab"], check=True,
                   cwd=ROOT)
    vaelab = str(TARGET / "debug" / "vaelab")
    print(cpu_line())
    work = Path(tempfile.mkdtemp(prefix="vaelab-bench-data-"))
    try:
        (work / "tiny.toml").write_text(TINY)
        (work / "conv.toml").write_text('name = "conv"\n' + CONV)
        (work / "sweep.toml").write_text(
            '[sweep]\nname = "two"\nseeds = [0, 1]\njobs = 2\n\n[base]\n' + CONV)
        env = dict(os.environ, HF_HUB_CACHE=str(args.data), HF_HUB_OFFLINE="1",
                   RAYON_NUM_THREADS="2")
        binaries = [("this build", vaelab)] + ([("--vs", args.vs)] if args.vs else [])
        for sitting in range(1, args.sittings + 1):
            for name, binary in binaries:
                print(f"sitting {sitting}, {name}: " + "; ".join(rows(binary, work, env)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
