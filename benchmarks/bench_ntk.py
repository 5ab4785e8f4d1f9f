"""Benchmark of ntk_companion's kernels: time and peak memory, printed as a Markdown
table.

Standard case:
``MLP(hidden=(512, 512, 512), activation="relu", W_std=1.5, b_std=0.05)``,
``d_in = 16``, float32, the full ``n x n`` Gram matrix ``H = K(X, X)`` of Gaussian
inputs.

* empirical NTK, ``empirical_ntk(model.apply, params, x)`` (``method="auto"``: the
  structured method, by tiles above 256 inputs), for n in {64, 256, 1024, 4096};
* the naive baseline ``G = jacobian(model.apply, params, x); G @ G.T`` (n x P Jacobian,
  P = 534,529) for n in {64, 256, 1024} (at n = 4096, G alone is 8.8 GB and the product
  1.8e13 flop: run it with ``--baseline-max-n 4096``);
* infinite-width NNGP + NTK,
  ``analytic_kernels(x, depth=3, activation="relu", W_std=1.5, b_std=0.05)``, for n in
  {1024, 4096, 16384}.

Every case runs in a fresh subprocess: the function is jit-compiled and called once
(warm-up, not timed), then timed ``--runs`` times (``block_until_ready``; the median is
reported), and the peak memory is the subprocess's maximal resident set size
(``resource.getrusage`` ``ru_maxrss``: everything the process held, JAX runtime
included; tracemalloc would miss XLA's buffers). The first row gives the same process
without any kernel, for reference.

With ``--neural-tangents PYTHON`` the table also times neural-tangents (the structured
derivatives of ``nt.empirical_ntk_fn`` and the analytic ``kernel_fn`` of the same
``stax`` network), run by another Python interpreter that has it installed:
neural-tangents 0.6.5 needs an older JAX, e.g.::

    python -m venv /tmp/nt
    /tmp/nt/bin/pip install neural-tangents==0.6.5 jax==0.4.23 jaxlib==0.4.23 \\
        "numpy<2" "scipy<1.13"

Its process also imports TensorFlow, which adds to its peak memory.

Usage::

    python benchmarks/bench_ntk.py              # the full table (about 2-3 minutes)
    python benchmarks/bench_ntk.py --quick      # small sizes only (about 20 seconds)
    python benchmarks/bench_ntk.py --cases empirical:1024 analytic:16384 --runs 9
    python benchmarks/bench_ntk.py --neural-tangents /tmp/nt/bin/python

Speed depends on the load of the machine: the table states the load average before and
after the run; rerun on an idle machine for reference figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HIDDEN = (512, 512, 512)
W_STD, B_STD, D_IN = 1.5, 0.05, 16
FULL = {"empirical": (64, 256, 1024, 4096), "baseline": (64, 256, 1024),
        "analytic": (1024, 4096, 16384)}
QUICK = {"empirical": (64, 256), "baseline": (64, 256), "analytic": (1024,)}
LABELS = {
    "idle": ("(none)", "process: JAX + parameters + inputs only"),
    "empirical": ("empirical NTK",
                  'empirical_ntk(model.apply, p, x) ("auto": structured)'),
    "baseline": ("empirical NTK", "naive: G = jacobian(model.apply, p, x); G @ G.T"),
    "analytic": ("NNGP + NTK", "analytic_kernels(x, depth=3, ...)"),
    "nt-empirical": ("empirical NTK",
                     "neural-tangents: empirical_ntk_fn, STRUCTURED_DERIVATIVES"),
    "nt-analytic": ("NNGP + NTK", "neural-tangents: stax kernel_fn"),
}
NT_KINDS = {"nt-empirical": "empirical", "nt-analytic": "analytic"}


# ---------------------------------------------------------------- one case (subprocess)
def nt_case(kind: str, n: int) -> tuple:
    """The same network and inputs in neural-tangents' ``stax``:
    ``(fn, params, x, P)``."""
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    layers = []
    for m in HIDDEN:
        layers += [stax.Dense(m, W_std=W_STD, b_std=B_STD), stax.Relu()]
    init_fn, apply_fn, kernel_fn = stax.serial(*layers,
                                               stax.Dense(1, W_std=W_STD, b_std=B_STD))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((n, D_IN)), jnp.float32)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    P = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    if kind == "nt-analytic":
        return jax.jit(lambda p, x: kernel_fn(x, None, ("nngp", "ntk"))), params, x, P
    k = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                            implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES)
    return jax.jit(lambda p, x: k(x, None, p)), params, x, P


def run_case(kind: str, n: int, runs: int) -> dict:
    import jax

    if kind in NT_KINDS:
        fn, params, x, P = nt_case(kind, n)
        return timed(kind, n, runs, fn, params, x, P)

    import jax.numpy as jnp
    import numpy as np

    import ntk_companion as ntk

    model = ntk.MLP(HIDDEN, activation="relu", W_std=W_STD, b_std=B_STD)
    params = model.init(jax.random.PRNGKey(0), D_IN, dtype=jnp.float32)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((n, D_IN)), jnp.float32)
    if kind == "idle":
        fn = None
    elif kind == "empirical":
        fn = jax.jit(lambda p, x: ntk.empirical_ntk(model.apply, p, x))
    elif kind == "baseline":
        def naive(p, x):
            G = ntk.jacobian(model.apply, p, x)
            return G @ G.T
        fn = jax.jit(naive)
    elif kind == "analytic":
        fn = jax.jit(lambda p, x: ntk.analytic_kernels(x, depth=len(HIDDEN),
                                                       activation="relu", W_std=W_STD,
                                                       b_std=B_STD))
    else:
        raise ValueError(kind)
    return timed(kind, n, runs, fn, params, x, model.num_params(D_IN))


def timed(kind: str, n: int, runs: int, fn, params, x, P: int) -> dict:
    """Compile and warm up ``fn(params, x)``, then time ``runs`` calls; peak RSS."""
    import resource

    import jax

    times = []
    if fn is not None:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(params, x))          # compile + warm-up
        first = time.perf_counter() - t0
        for _ in range(runs):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(params, x))
            times.append(time.perf_counter() - t0)
    else:
        first = 0.0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    versions = {"jax": jax.__version__}
    if kind in NT_KINDS:
        import neural_tangents
        versions["neural-tangents"] = neural_tangents.__version__
    return {"kind": kind, "n": n, "times": times, "first": first,
            "peak_bytes": peak_kib * 1024, "P": P, "versions": versions}


# ---------------------------------------------------------------- driver
def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu})"


def load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def fmt_time(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def fmt_bytes(b: float) -> str:
    return f"{b / 2**20:.0f} MiB" if b < 2**30 else f"{b / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per case (>= 5)")
    ap.add_argument("--baseline-max-n", type=int, default=1024,
                    help="largest n of the naive Jacobian baseline (default 1024)")
    ap.add_argument("--neural-tangents", metavar="PYTHON",
                    help="also time neural-tangents, run by this Python interpreter")
    ap.add_argument("--cases", nargs="*",
                    help="KIND:N items, e.g. empirical:1024 analytic:4096")
    # internal: one case
    ap.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    runs = max(5, args.runs or 7)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), runs)))
        return 0

    if args.cases:
        cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases]
    else:
        sizes = QUICK if args.quick else FULL
        cases = [("idle", 64)]
        for kind in ("empirical", "baseline", "analytic"):
            cases += [(kind, n) for n in sizes[kind]
                      if kind != "baseline" or n <= args.baseline_max_n]
        if args.neural_tangents:
            cases += [(nt_kind, n) for nt_kind, kind in NT_KINDS.items()
                      for n in sizes[kind]]
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    import jax
    load_before = load()
    started = time.time()
    rows = []
    for kind, n in cases:
        r = max(5, runs if n < 4096 else 5)
        python = args.neural_tangents if kind in NT_KINDS else sys.executable
        if python is None:
            raise SystemExit(f"case {kind}:{n} needs --neural-tangents PYTHON")
        out = subprocess.run([python, os.path.abspath(__file__), "--case", kind,
                              str(n), "--runs", str(r)], env=env, capture_output=True,
                             text=True)
        if out.returncode != 0:
            rows.append((kind, n, None,
                         out.stderr.strip().splitlines()[-1:] or ["failed"]))
            print(f"{kind} n={n}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((kind, n, res, None))
        t = statistics.median(res["times"]) if res["times"] else None
        print(f"{kind:9s} n={n:6d}: {fmt_time(t) if t else '-':>10s}  peak "
              f"{fmt_bytes(res['peak_bytes'])}", file=sys.stderr)

    print(f"Machine: {machine()}, {platform.system()} {platform.release()}; JAX "
          f"{jax.__version__} (CPU), float32.")
    print(f"Load average (1/5/15 min) before: {load_before}; after: {load()}; "
          f"wall time {time.time() - started:.0f} s.")
    print(f"Model: MLP(hidden={HIDDEN}, relu, W_std={W_STD}, b_std={B_STD}), "
          f"d_in={D_IN}, P={rows[0][2]['P'] if rows and rows[0][2] else '?'} "
          "parameters; full n x n kernel.")
    nt_versions = {json.dumps(res["versions"], sort_keys=True)
                   for kind, _, res, _ in rows
                   if res is not None and kind in NT_KINDS}
    for v in sorted(nt_versions):
        v = json.loads(v)
        print(f"neural-tangents rows: neural-tangents {v['neural-tangents']} on JAX "
              f"{v['jax']} (CPU), float32, same network, inputs and parameter count.")
    print()
    print("| kernel | method | n | time (median) | runs | "
          "first call (compile) | peak RSS |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, n, res, err in rows:
        kernel, method = LABELS[kind]
        if res is None:
            print(f"| {kernel} | {method} | {n} | failed: {err[0][:60]} | | | |")
            continue
        if kind == "idle":
            print(f"| {kernel} | {method} | {n} | - | - | - | "
                  f"{fmt_bytes(res['peak_bytes'])} |")
            continue
        t = statistics.median(res["times"])
        print(f"| {kernel} | {method} | {n} | {fmt_time(t)} | {len(res['times'])} | "
              f"{fmt_time(res['first'])} | {fmt_bytes(res['peak_bytes'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
