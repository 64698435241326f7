#!/usr/bin/env python3
"""Times the PyTorch reference (../shared/anchors/torch_vae.py) and vaelab-bench in one sitting
and prints the ratios vaelab / PyTorch (below 1: vaelab is faster).

  TORCH_PYTHON=.venv-torch/bin/python python3 scripts/compare_torch.py [--epochs 3] [--iw]
  ... --arch conv    the DCGAN-style conv VAE (torch_vae.py --arch conv, vaelab-bench --conv)

Needs a Python with torch (see ../shared/anchors/README.md) and a built vaelab-bench.
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"


def torch_run(py, script, threads, epochs, iw, arch="mlp"):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [py, script, "--data-dir", DATA, "--epochs", str(epochs), "--threads", str(threads),
               "--iw-samples", "1000" if iw else "0", "--arch", arch, "--out", out.name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        res = json.load(open(out.name))
    secs = [e["train_seconds"] for e in res["epochs"]]
    return statistics.median(secs[1:] or secs), res.get("iwae_seconds")


def torch_sweep(py, script, runs, epochs, jobs=2):
    """`runs` reference runs, `jobs` processes of 1 thread at a time (PyTorch's best launch)."""
    t0 = time.perf_counter()
    pending = list(range(runs))
    active = []
    while pending or active:
        while pending and len(active) < jobs:
            seed = pending.pop(0)
            cmd = [py, script, "--data-dir", DATA, "--epochs", str(epochs), "--threads", "1",
                   "--iw-samples", "0", "--seed", str(seed)]
            active.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        active[0].wait()
        if active[0].returncode:
            sys.exit(f"reference run failed: {active[0].args}")
        active.pop(0)
    return time.perf_counter() - t0


def vaelab_sweep(bench, runs, epochs):
    out = subprocess.run([bench, "--epochs", str(epochs), "--sweep-runs", str(runs)], check=True,
                         capture_output=True, text=True).stdout
    walls = {m.group(1): float(m.group(2)) for m in re.finditer(r"SWEEP .*strategy=(\S+) wall_seconds=([0-9.]+)", out)}
    return walls


def vaelab_run(bench, threads, epochs, iw, arch="mlp"):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [bench, "--epochs", str(epochs)] + (["--iw-samples", "1000"] if iw else [])
    cmd += ["--conv"] if arch == "conv" else []
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
    epoch = float(re.search(r"SUMMARY .*epoch_seconds=([0-9.]+)", out).group(1))
    m = re.search(r"IWAE .*seconds=([0-9.]+)", out)
    return epoch, (float(m.group(1)) if m else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iw", action="store_true", help="also time IWAE K=1000 on 1000 images (2 threads)")
    ap.add_argument("--sweep", type=int, default=0, metavar="RUNS",
                    help="also time a sweep of RUNS runs: PyTorch as 2 processes x 1 thread, vaelab both ways")
    ap.add_argument("--arch", choices=["mlp", "conv"], default="mlp",
                    help="the network timed per epoch (IWAE and sweeps use the MLP)")
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON", sys.executable))
    ap.add_argument("--reference", default=os.path.join(ROOT, "..", "shared", "anchors", "torch_vae.py"))
    ap.add_argument("--bench", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/vaelab-target")), "debug", "vaelab-bench"))
    a = ap.parse_args()
    rows = []
    for threads in (1, 2):
        iw = a.iw and threads == 2 and a.arch == "mlp"
        t_epoch, t_iw = torch_run(a.torch_python, a.reference, threads, a.epochs, iw, a.arch)
        v_epoch, v_iw = vaelab_run(a.bench, threads, a.epochs, iw, a.arch)
        rows.append((f"{a.arch} epoch, {threads} thread{'s' if threads > 1 else ''}", t_epoch, v_epoch))
        if iw:
            rows.append(("IWAE K=1000 x 1000 images, 2 threads", t_iw, v_iw))
    if a.sweep:
        t = torch_sweep(a.torch_python, a.reference, a.sweep, a.epochs)
        for strategy, v in vaelab_sweep(a.bench, a.sweep, a.epochs).items():
            rows.append((f"sweep {a.sweep}x{a.epochs} ep, vaelab {strategy}", t, v))
    print(f"{'what':<58} {'PyTorch s':>10} {'vaelab s':>10} {'ratio':>7}")
    for what, t, v in rows:
        print(f"{what:<58} {t:>10.3f} {v:>10.3f} {v / t:>7.2f}")


if __name__ == "__main__":
    main()
