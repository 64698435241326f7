"""k̂ reference values for crates/vae/src/eval/psis.rs, from an independent implementation.

Run with ArviZ installed (`pip install arviz==0.20.0 "matplotlib<3.10" "numpy<2.2"`):
    python3 scripts/psis_reference.py
and paste its rows into the test `khat_matches_arviz`. The weights are a closed form of the
index, so Rust builds the same ones: lw_i = -xi * ln(frac(0.1 + i * 0.6180339887498949))
+ 0.01 * (i mod 7).
"""
import math

import arviz
import numpy as np


def log_weights(xi, s):
    return np.array(
        [-xi * math.log(math.modf(0.1 + i * 0.6180339887498949)[0]) + 0.01 * (i % 7) for i in range(s)]
    )


for xi in (0.3, 0.7, 1.1):
    for s in (100, 1000, 5000):
        _, k = arviz.psislw(log_weights(xi, s)[None, :], reff=1.0)
        print(f"({xi}, {s}, {float(k[0])!r}),")
