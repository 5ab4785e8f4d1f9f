"""Benchmark of the layer library on the standard convolutional case.

8x8x1 images, ``Conv(64, (3, 3), SAME)``-ReLU three times, ``GlobalAvgPool``, ``Dense(1)``,
``W_std = 1.5``, ``b_std = 0.05``, float32. Prints the median of ``--repeats`` runs after a
warm-up (compilation excluded) of the analytic NNGP + NTK and of the structured empirical
NTK, for each ``--n``.

    python benchmarks/bench_layers.py --n 64 256 --repeats 3
    python benchmarks/bench_layers.py --n 1797 --repeats 1 --skip-empirical
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import ntk_companion as ntk  # noqa: E402


def network(width: int) -> ntk.Layer:
    kw = dict(W_std=1.5, b_std=0.05)
    parts = []
    for _ in range(3):
        parts += [ntk.Conv(width, (3, 3), padding="SAME", **kw), ntk.Activation("relu")]
    return ntk.serial(*parts, ntk.GlobalAvgPool(), ntk.Dense(1, **kw))


def _median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())            # warm-up: compilation
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--skip-empirical", action="store_true")
    args = parser.parse_args()
    net = network(64)
    print("| n | analytic NNGP+NTK (s) | structured empirical NTK (s) |")
    print("|---|---|---|")
    for n in args.n:
        x = jax.random.normal(jax.random.key(0), (n, 8, 8, 1), jnp.float32)
        t_an = _median_time(lambda: net.kernels(x, block_size=args.block_size),
                            args.repeats)
        t_emp = float("nan")
        if not args.skip_empirical:
            params = net.init(jax.random.key(1), (8, 8, 1), jnp.float32)
            t_emp = _median_time(lambda: ntk.empirical_ntk(net.apply, params, x,
                                                           method="structured"),
                                 args.repeats)
        print(f"| {n} | {t_an:.3g} | {t_emp:.3g} |")


if __name__ == "__main__":
    main()
