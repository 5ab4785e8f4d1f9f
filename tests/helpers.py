"""Shared fixtures-as-functions for the package tests (imported as
``from helpers import ...``)."""
import jax.numpy as jnp
import numpy as np


def normal_params(model, d_in, seed):
    """Standard normal parameters in the layout of ``model.init``
    (the NTK initialization), drawn with numpy so that setting up the module compiles
    nothing."""
    rng = np.random.default_rng(seed)
    widths = (d_in, *model.hidden, model.out_dim)
    layers = []
    for m, k in zip(widths[:-1], widths[1:]):
        layer = {"W": jnp.asarray(rng.standard_normal((m, k)))}
        if model.b_std:
            layer["b"] = jnp.asarray(rng.standard_normal(k))
        layers.append(layer)
    return layers


def toc_files(node) -> list[str]:
    """Every ``file``/``root`` entry of a parsed ``_toc.yml``, in order."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root"):
                found.append(value)
            else:
                found.extend(toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(toc_files(item))
    return found
