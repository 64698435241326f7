#!/usr/bin/env python3
"""The PyTorch equivalent of vaelab's k-sample objectives, on the reference's classic network
(../shared/anchors/torch_vae.py: 784-400-latent, Bernoulli on [0,1] pixels, Adam 1e-3, batch 128):
  --objective elbo --train-samples k   the mean of k one-sample ELBOs (closed-form KL)
  --objective iwae --train-samples k   log (1/k) sum_i p(x, z_i) / q(z_i|x), reparameterized
The k draws go through the decoder as one batch of k*B rows, as vaelab does. Prints one JSON line
per epoch (training seconds, test loss as the one-sample ELBO) and writes them with --out.
  --latent-layers 20,10                two stochastic layers as vaelab's latent_layers: z1 from the
                                       classic encoder, q(z2|z1) and p(z1|z2) MLPs of 100, 100 (ReLU),
                                       the lower layer's KL sampled, the top's in closed form

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


def mlp(widths):
    """Linear layers of these widths with ReLU between them (none after the last)."""
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class TwoLayer(torch.nn.Module):
    """vaelab's latent_layers = [l1, l2] on the classic body: x-400-(z1) and z1-100-100-(z2)."""

    def __init__(self, l1, l2, hidden=400, between=(100, 100)):
        super().__init__()
        self.l1, self.l2 = l1, l2
        self.enc = mlp([784, hidden, 2 * l1])
        self.up = mlp([l1, *between, 2 * l2])
        self.down = mlp([l2, *reversed(between), 2 * l1])
        self.dec = mlp([l1, hidden, 784])

    def terms(self, x, k):
        """(k, B) log p(x|z1), the (k, B) sampled log p(z) - log q(z|x), the (k, B) KL estimate."""
        mu1, lv1 = self.enc(x).chunk(2, dim=1)
        e1 = torch.randn(k, *mu1.shape)
        z1 = mu1 + e1 * torch.exp(0.5 * lv1)
        mu2, lv2 = self.up(z1).chunk(2, dim=2)
        e2 = torch.randn_like(mu2)
        z2 = mu2 + e2 * torch.exp(0.5 * lv2)
        pm, plv = self.down(z2).chunk(2, dim=2)
        log_q1 = -0.5 * (e1.pow(2) + lv1)
        log_p1 = -0.5 * ((z1 - pm).pow(2) * torch.exp(-plv) + plv)
        log_q2 = -0.5 * (e2.pow(2) + lv2)
        log_p2 = -0.5 * z2.pow(2)
        logits = self.dec(z1.reshape(-1, self.l1))
        log_px_z = -F.binary_cross_entropy_with_logits(
            logits, x.expand(k, -1, -1).reshape(-1, x.shape[1]), reduction="none").sum(1).view(k, -1)
        ratio = (log_p1 - log_q1).sum(2) + (log_p2 - log_q2).sum(2)
        kl_top = -0.5 * torch.sum(1 + lv2 - mu2.pow(2) - lv2.exp(), dim=2)
        kl = (log_q1 - log_p1).sum(2) + kl_top
        return log_px_z, ratio, kl


def two_layer_loss(model, x, objective, k):
    """The batch mean of the two-layer model's k-sample loss, as vaelab computes it."""
    log_px_z, ratio, kl = model.terms(x, k)
    if objective == "elbo":
        return (kl - log_px_z).mean()
    return -(torch.logsumexp(log_px_z + ratio, 0) - math.log(k)).mean()


def two_layer_test(model, x):
    """The one-sample test -ELBO."""
    with torch.no_grad():
        tot = 0.0
        for i in range(0, x.shape[0], 1000):
            tot += two_layer_loss(model, x[i:i + 1000], "elbo", 1).item() * x[i:i + 1000].shape[0]
    return tot / x.shape[0]


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
    ap.add_argument("--latent-layers", help="two sizes, e.g. 20,10: the two-layer model")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    xtr, xte = load(a.data_dir, "train"), load(a.data_dir, "test")
    layers = [int(v) for v in a.latent_layers.split(",")] if a.latent_layers else None
    if layers and len(layers) != 2:
        sys.exit("--latent-layers: two sizes, e.g. 20,10")
    model = TwoLayer(*layers) if layers else Model(a.latent)
    loss_of = two_layer_loss if layers else k_sample_loss
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = []
    for ep in range(1, a.epochs + 1):
        model.train()
        perm = torch.randperm(xtr.shape[0])
        t0 = time.perf_counter(); tot = 0.0
        for i in range(0, xtr.shape[0], a.batch):
            xb = xtr[perm[i:i + a.batch]]
            loss = loss_of(model, xb, a.objective, a.train_samples)
            opt.zero_grad(); loss.backward(); opt.step()
            tot += loss.item() * xb.shape[0]
        secs = time.perf_counter() - t0
        te = two_layer_test(model, xte) if layers else evaluate(model, xte, 1.0)[0]
        row = dict(epoch=ep, train_seconds=secs, train_loss=tot / xtr.shape[0], test_loss=te)
        epochs.append(row)
        print(json.dumps(row), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(torch=torch.__version__, args=vars(a), epochs=epochs), f, indent=1)


if __name__ == "__main__":
    main()
