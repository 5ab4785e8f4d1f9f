"""Benchmark of the layer library on the standard convolutional case.

8x8x1 images, ``Conv(64, (3, 3), SAME)``-ReLU three times, ``GlobalAvgPool``,
``Dense(1)``, ``W_std = 1.5``, ``b_std = 0.05``, float32. Times the analytic NNGP + NTK
(``net.kernels(x)``) and the structured empirical NTK of the 64-channel network
(``empirical_ntk(net.apply, params, x, method="structured")``) for each ``--n``, and the
analytic kernels of the same network with a ``Flatten`` readout instead of
``GlobalAvgPool`` (computed on the position-diagonal only: the diagonal path of
``Layer.kernels``; ``--skip-flatten`` to leave it out): the
median of ``--repeats`` calls of the program compiled ahead of time (the compile time is
reported separately). Prints a markdown table side by side with neural-tangents
0.6.5, whose figures are quoted (it does not install on current JAX): measured on a
2-core machine of the same kind with neural-tangents 0.6.5 on JAX 0.4.25 (median of 3
after warm-up; its analytic kernel at n = 256 did not finish in 15 minutes).

    python benchmarks/bench_layers.py --n 64 --repeats 3
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

#: neural-tangents 0.6.5 on JAX 0.4.25, same network and sizes (seconds, quoted).
NT_SECONDS = {("analytic", 64): 10.1, ("empirical", 64): 1.6}


def network(width: int, readout: str = "gap") -> ntk.Layer:
    """The standard network; ``readout="flatten"``: ``Flatten`` instead of
    ``GlobalAvgPool``."""
    kw = dict(W_std=1.5, b_std=0.05)
    parts = []
    for _ in range(3):
        parts += [ntk.Conv(width, (3, 3), padding="SAME", **kw), ntk.Activation("relu")]
    pool = ntk.Flatten() if readout == "flatten" else ntk.GlobalAvgPool()
    return ntk.serial(*parts, pool, ntk.Dense(1, **kw))


def _timed(fn, args: tuple, repeats: int) -> tuple[float, float]:
    """``(median of repeats calls, compile time)`` of ``jax.jit(fn)(*args)``: compiled
    ahead of time (``lower(...).compile()``, timed), then called."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compile_s


def _row(kind: str, n: int, seconds: float, compile_s: float) -> str:
    nt = NT_SECONDS.get((kind, n))
    label = {"analytic": "analytic NNGP + NTK",
             "flatten": "analytic NNGP + NTK, Flatten readout (diagonal path)",
             "empirical": "structured empirical NTK (64 channels)"}[kind]
    nt_text = f"{nt:.3g}" if nt else ("did not finish (n = 256: > 15 min)"
                                      if kind == "analytic" else "-")
    speed = f"{nt / seconds:.0f}x" if nt else "-"
    return (f"| {label} | {n} | {seconds:.3g} | {compile_s:.2g} | {nt_text} | "
            f"{speed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--skip-empirical", action="store_true")
    parser.add_argument("--skip-analytic", action="store_true")
    parser.add_argument("--skip-flatten", action="store_true")
    args = parser.parse_args()
    net = network(64)
    print("| kernel | n | ntk_companion (s) | compile (s) | neural-tangents 0.6.5 (s, "
          "quoted) | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n in args.n:
        x = jax.random.normal(jax.random.key(0), (n, 8, 8, 1), jnp.float32)
        if not args.skip_analytic:
            t, c = _timed(lambda x: net.kernels(x, block_size=args.block_size), (x,),
                          args.repeats)
            print(_row("analytic", n, t, c), flush=True)
        if not args.skip_flatten:
            flat = network(64, "flatten")
            t, c = _timed(lambda x: flat.kernels(x, block_size=args.block_size), (x,),
                          args.repeats)
            print(_row("flatten", n, t, c), flush=True)
        if not args.skip_empirical:
            params = net.init(jax.random.key(1), (8, 8, 1), jnp.float32)
            t, c = _timed(lambda x, p: ntk.empirical_ntk(net.apply, p, x,
                                                         method="structured",
                                                         block_size=args.block_size),
                          (x, params), args.repeats)
            print(_row("empirical", n, t, c), flush=True)


if __name__ == "__main__":
    main()
