"""The benchmark script runs and prints its table (a smoke test: no timing is
asserted)."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ntk.py"
LAYERS = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_layers.py"


def test_benchmark_prints_a_table_row_per_case():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, str(SCRIPT), "--cases", "empirical:32",
                          "baseline:8", "analytic:32", "--runs", "5"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| kernel | method | n | time (median) |")
    body = rows[2:]
    assert [r.split("|")[3].strip() for r in body] == ["32", "8", "32"]
    assert all("failed" not in r and (" ms |" in r or " s |" in r) for r in body), body
    assert "P=534529 parameters" in out.stdout


def test_layer_benchmark_prints_its_table():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, str(LAYERS), "--n", "4", "--repeats", "1"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| kernel | n | ntk_companion (s) | compile (s) |")
    body = rows[2:]
    assert [r.split("|")[1].strip() for r in body] == [
        "analytic NNGP + NTK", "analytic NNGP + NTK, Flatten readout (diagonal path)",
        "structured empirical NTK (64 channels)"]
    assert all(r.split("|")[2].strip() == "4" and float(r.split("|")[3]) > 0
               for r in body), body
