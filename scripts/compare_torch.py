#!/usr/bin/env python3
"""Times the PyTorch reference (../shared/anchors/torch_vae.py) and vaelab-bench in one sitting
and prints the ratios vaelab / PyTorch (below 1: vaelab is faster).

  TORCH_PYTHON=.venv-torch/bin/python python3 scripts/compare_torch.py [--epochs 20] [--iw] [--compile]
  ... --arch conv    the DCGAN-style conv VAE (torch_vae.py --arch conv, vaelab-bench --conv)
  ... --objective iwae --train-samples 5   the k-sample objectives on the classic network
                     (scripts/torch_bounds.py against vaelab-bench --objective/--train-samples)
  ... --latent-layers 20,10   the two-layer model (latent_layers = [20, 10]) on the classic body
  ... --isa avx2     both sides held to AVX2 + FMA on an AVX-512 CPU (oneDNN, ATen and MKL for
                     PyTorch; VAELAB_CONV_SIMD and VAELAB_LOOP_SIMD for vaelab): the code an
                     AVX2-only server runs, timed on this CPU's cores (not an AVX2-only CPU's)

Prints the CPU line first, then every epoch of every run, then the table: the median and the
slowest epoch, and with --iw the IWAE bound and the whole run (per-epoch tests and the final
evaluation included), each against eager PyTorch and, with --compile, torch.compile.

Needs a Python with torch (see ../shared/anchors/README.md) and a built vaelab-bench.
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"


def cpu_line():
    """The CPU as every figure states it: model name, family/model, AVX-512 flags."""
    info = open("/proc/cpuinfo").read().split("\n\n")[0]
    field = lambda k: next((l.split(":", 1)[1].strip() for l in info.splitlines()
                            if l.split(":", 1)[0].strip() == k), "?")
    flags = field("flags").split()
    avx512 = " ".join(f for f in flags if f.startswith("avx512")) or (
        "avx2, no avx512" if "avx2" in flags else "no avx2, no avx512")
    return f"CPU {field('model name')} (family {field('cpu family')} model {field('model')}), {avx512}"


# What `--isa avx2` sets: the widest vectors each side may use.
ISA_ENV = {
    "avx2": dict(ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2",
                 VAELAB_CONV_SIMD="avx2", VAELAB_LOOP_SIMD="avx2"),
    "native": {},
}


def torch_run(py, script, threads, epochs, iw, arch="mlp", compile_=False, objective=None, k=1,
              layers=None):
    """One reference run: its per-epoch training seconds, IWAE seconds and whole wall time."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [py, script, "--data-dir", DATA, "--epochs", str(epochs), "--threads", str(threads),
               "--out", out.name]
        if objective:
            cmd[1] = os.path.join(ROOT, "scripts", "torch_bounds.py")
            cmd += ["--objective", objective, "--train-samples", str(k)]
            cmd += ["--latent-layers", layers] if layers else []
        else:
            cmd += ["--iw-samples", "1000" if iw else "0", "--arch", arch]
        cmd += ["--compile"] if compile_ else []
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        res = json.load(open(out.name))
    secs = [e["train_seconds"] for e in res["epochs"]]
    return dict(epochs=secs, epoch=statistics.median(secs[1:] or secs),
                iwae=res.get("iwae_seconds"), wall=wall,
                test_loss=res["epochs"][-1]["test_loss"])


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


def vaelab_run(bench, threads, epochs, iw, arch="mlp", objective=None, k=1, layers=None):
    """One vaelab-bench run: per-epoch seconds, and with `iw` the whole run as a user runs it
    (per-epoch tests, IWAE with the 8-bit mass, the E-step gap split)."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    # --iw-samples also times the bound alone after the run, as the reference computes it.
    cmd = [bench, "--epochs", str(epochs)] + (["--whole-run", "--iw-samples", "1000"] if iw else [])
    cmd += ["--conv"] if arch == "conv" else []
    cmd += ["--objective", objective, "--train-samples", str(k)] if objective else []
    cmd += ["--latent-layers", layers] if layers else []
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    secs = [float(m.group(1)) for m in re.finditer(r"^threads=\S+ epoch=\d+ seconds=([0-9.]+)", out, re.M)]
    tests = re.findall(r"test_neg_elbo=([0-9.]+)", out)
    res = dict(epochs=secs, epoch=statistics.median(secs[1:] or secs), wall=wall,
               test_loss=float(tests[-1]) if tests else None, iwae=None, estep=0.0)
    m = re.search(r"WHOLE_RUN .*iwae=([0-9.]+) estep=([0-9.]+)", out)
    if m:
        res["iwae_mass"], res["estep"] = float(m.group(1)), float(m.group(2))
        alone = float(re.search(r"^IWAE threads=.* seconds=([0-9.]+)", out, re.M).group(1))
        extra = float(re.search(r"^IWAE\+MASS .* seconds=([0-9.]+)", out, re.M).group(1))
        # The run as a user runs it, process start and data loading included, less the timing
        # passes after it (the bound alone and again with the mass).
        res["iwae"], res["wall"] = alone, wall - alone - extra
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20, help="epochs per run (the shipped sweeps train 20)")
    ap.add_argument("--iw", action="store_true",
                    help="whole runs: also the final IWAE K=1000 on 1000 images (vaelab: and the gap split)")
    ap.add_argument("--compile", action="store_true",
                    help="also time the reference with torch.compile (the stronger anchor)")
    ap.add_argument("--sweep", type=int, default=0, metavar="RUNS",
                    help="also time a sweep of RUNS runs: PyTorch as 2 processes x 1 thread, vaelab both ways")
    ap.add_argument("--arch", choices=["mlp", "conv"], default="mlp",
                    help="the network timed per epoch (IWAE and sweeps use the MLP)")
    ap.add_argument("--objective", choices=["elbo", "iwae"],
                    help="time the k-sample objective on the classic network (no --iw, --arch, --compile)")
    ap.add_argument("--train-samples", type=int, default=1, metavar="K", help="draws per image with --objective")
    ap.add_argument("--latent-layers", metavar="L1,L2",
                    help="the two-layer model (e.g. 20,10) on the classic body, with --objective (default elbo)")
    ap.add_argument("--threads", default="1,2", help="thread counts to time, e.g. 2")
    ap.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                    help="avx2: hold both sides to AVX2 + FMA (the AVX2-only servers' code paths)")
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON", sys.executable))
    ap.add_argument("--reference", default=os.path.join(ROOT, "..", "shared", "anchors", "torch_vae.py"))
    ap.add_argument("--bench", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/vaelab-target")), "debug", "vaelab-bench"))
    a = ap.parse_args()
    os.environ.update(ISA_ENV[a.isa])
    print(cpu_line() + ("" if a.isa == "native" else f"; both sides held to {a.isa}"))
    if a.objective and a.compile:
        sys.exit("--compile times torch_vae.py only; leave it out with --objective")
    if a.latent_layers and not a.objective:
        a.objective = "elbo"
    anchors = [("PyTorch", False)] + ([("compiled", True)] if a.compile else [])
    rows = []
    for threads in (int(t) for t in a.threads.split(",")):
        iw = a.iw and a.arch == "mlp" and not a.objective
        ref = {name: torch_run(a.torch_python, a.reference, threads, a.epochs, iw, a.arch, c,
                               a.objective, a.train_samples, a.latent_layers)
               for name, c in anchors}
        v = vaelab_run(a.bench, threads, a.epochs, iw, a.arch, a.objective, a.train_samples,
                       a.latent_layers)
        t = f"{threads} thread{'s' if threads > 1 else ''}"
        if a.objective:
            t += f", {a.objective} k={a.train_samples}"
            t += f", latent layers {a.latent_layers}" if a.latent_layers else ""
        for name, r in list(ref.items()) + [("vaelab", v)]:
            curve = " ".join(f"{x:.2f}" for x in r["epochs"])
            print(f"{a.arch} {t} {name} epochs (s): {curve}; last test loss {r['test_loss']}")
        rows.append((f"{a.arch} epoch (median of 2..{a.epochs}), {t}", {k: r["epoch"] for k, r in ref.items()}, v["epoch"]))
        worst = max(v["epochs"][1:] or v["epochs"])
        rows.append((f"{a.arch} slowest epoch, {t}", {k: max(r["epochs"][1:] or r["epochs"]) for k, r in ref.items()}, worst))
        if iw:
            rows.append((f"IWAE K=1000 x 1000 images, {t}", {k: r["iwae"] for k, r in ref.items()}, v["iwae"]))
            rows.append((f"  vaelab's run: the bound with the 8-bit mass, {t}", {k: r["iwae"] for k, r in ref.items()}, v["iwae_mass"]))
            rows.append((f"  vaelab's run: the E-step gap split, {t}", {}, v["estep"]))
            # The reference has no gap split: its whole run is set against vaelab's less the E-step.
            rows.append((f"whole run less the E-step ({a.epochs} ep), {t}", {k: r["wall"] for k, r in ref.items()},
                         v["wall"] - v["estep"]))
    if a.sweep:
        tsw = torch_sweep(a.torch_python, a.reference, a.sweep, a.epochs)
        for strategy, v in vaelab_sweep(a.bench, a.sweep, a.epochs).items():
            rows.append((f"sweep {a.sweep}x{a.epochs} ep, vaelab {strategy}", {"PyTorch": tsw}, v))
    head = "".join(f" {n + ' s':>12}" for n, _ in anchors)
    ratios = "".join(f" {'/' + n:>10}" for n, _ in anchors)
    print(f"{'what':<52}{head} {'vaelab s':>10}{ratios}")
    for what, ref, v in rows:
        cells = "".join(f" {ref.get(n, float('nan')):>12.3f}" for n, _ in anchors)
        rs = "".join(f" {v / ref[n]:>10.2f}" if n in ref and ref[n] else f" {'':>10}" for n, _ in anchors)
        print(f"{what:<52}{cells} {v:>10.3f}{rs}")


if __name__ == "__main__":
    main()
