#!/usr/bin/env python3
"""The PyTorch equivalent of vaelab's k-sample objectives, on the reference's classic network
(../shared/anchors/torch_vae.py: 784-400-latent, Bernoulli on [0,1] pixels, Adam 1e-3, batch 128):
  --objective elbo --train-samples k   the mean of k one-sample ELBOs (closed-form KL)
  --objective iwae --train-samples k   log (1/k) sum_i p(x, z_i) / q(z_i|x), reparameterized
The k draws go through the decoder as one batch of k*B rows, as vaelab does. Prints one JSON line
per epoch (training seconds, test loss as the one-sample ELBO) and writes them with --out.

  TORCH_PYTHON=... python3 scripts/torch_bounds.py --data-dir /usr/share/datasets/fashion-mnist \
      --objective iwae --train-samples 5 --epochs 3 --threads 1 --out t.json
"""
import argparse, json, math, os, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "anchors"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_vae import Model, evaluate, load  # noqa: E402


def k_sample_loss(model, x, objective, k):
    """The batch mean of the k-sample loss: −(mean of k ELBOs) or −(IWAE bound)."""
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    eps = torch.randn(k, *mu.shape)
    z = mu + eps * std  # (k, B, L)
    logits = model.decode(z.reshape(-1, mu.shape[1]))
    log_px_z = -F.binary_cross_entropy_with_logits(
        logits, x.expand(k, -1, -1).reshape(-1, x.shape[1]), reduction="none").sum(1).view(k, -1)
    if objective == "elbo":
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        return (-log_px_z.mean(0) + kl).mean()
    log_ratio = (0.5 * eps.pow(2) - 0.5 * z.pow(2) + 0.5 * logvar).sum(2)  # log p(z) − log q(z|x)
    bound = torch.logsumexp(log_px_z + log_ratio, 0) - math.log(k)
    return -bound.mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--objective", choices=["elbo", "iwae"], default="iwae")
    ap.add_argument("--train-samples", type=int, default=5)
    ap.add_argument("--latent", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    xtr, xte = load(a.data_dir, "train"), load(a.data_dir, "test")
    model = Model(a.latent)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = []
    for ep in range(1, a.epochs + 1):
        model.train()
        perm = torch.randperm(xtr.shape[0])
        t0 = time.perf_counter(); tot = 0.0
        for i in range(0, xtr.shape[0], a.batch):
            xb = xtr[perm[i:i + a.batch]]
            loss = k_sample_loss(model, xb, a.objective, a.train_samples)
            opt.zero_grad(); loss.backward(); opt.step()
            tot += loss.item() * xb.shape[0]
        secs = time.perf_counter() - t0
        te, _, _ = evaluate(model, xte, 1.0)
        row = dict(epoch=ep, train_seconds=secs, train_loss=tot / xtr.shape[0], test_loss=te)
        epochs.append(row)
        print(json.dumps(row), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(torch=torch.__version__, args=vars(a), epochs=epochs), f, indent=1)


if __name__ == "__main__":
    main()
