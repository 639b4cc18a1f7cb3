"""No public pair or module returns an array that shares memory with what its backward reads.

A caller may add a residual to an output in place (``out += x``), or scribble
on returned weights. For every public forward of ``numpy_attention.functional``
and ``numpy_attention.kernels`` and every module, each returned array is edited
in place after the forward, and the backward must give exactly the gradients of
an untouched run. A forward pair without an entry in ``PAIRS`` fails the test
that walks the packages, so a new pair cannot skip this check.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import numpy_attention as na
from numpy_attention import functional, kernels
from numpy_attention.models import GPT


def normal(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


QKV = (normal(2, 4, 6, 3), normal(2, 2, 7, 3, seed=1), normal(2, 2, 7, 5, seed=2))
# name -> (forward, backward, positional inputs, keyword options); options draw dropout from a fixed seed.
PAIRS = {
    "softmax": ("softmax_forward", "softmax_backward", (normal(3, 5),), {}),
    "linear": ("linear_forward", "linear_backward", (normal(2, 3, 4), normal(5, 4), normal(5)), {}),
    "embedding": ("embedding_forward", "embedding_backward", (np.array([[0, 2], [1, 1]]), normal(3, 4)), {}),
    "cross_entropy": ("cross_entropy_forward", "cross_entropy_backward", (normal(4, 5), np.array([0, 4, 2, 1])), {}),
    "attention": ("attention_forward", "attention_backward", QKV, {"is_causal": True, "dropout_p": 0.3}),
    "flash_attention": ("flash_attention_forward", "flash_attention_backward", QKV,
                        {"is_causal": True, "dropout_p": 0.3, "block_size": 2}),
    "rope": ("rope_forward", "rope_backward", (normal(2, 5, 6),), {"interleaved": True}),
    "rms_norm": ("rms_norm_forward", "rms_norm_backward", (normal(3, 4), normal(4)), {}),
    "score_mod": ("score_mod_forward", "score_mod_backward", (normal(2, 3, 4) * 5, np.arange(3), np.arange(4)),
                  {"softcap": 2.0, "alibi_slopes": np.array([0.5, 0.25])}),
    "layer_norm": ("layer_norm_forward", "layer_norm_backward", (normal(3, 4), normal(4), normal(4)), {}),
    "gelu": ("gelu_forward", "gelu_backward", (normal(3, 4),), {}),
    "gelu_tanh": ("gelu_forward", "gelu_backward", (normal(3, 4),), {"approximate": "tanh"}),
    "swiglu": ("swiglu_forward", "swiglu_backward", (normal(3, 4), normal(3, 4, seed=1)), {}),
    "softmax_with_sink": ("softmax_with_sink_forward", "softmax_with_sink_backward", (normal(2, 3, 4), normal(2)),
                          {}),
}


def public_forwards(package) -> set[str]:
    return {name for name, obj in vars(package).items() if name.endswith("_forward") and inspect.isfunction(obj)}


def edit_in_place(result) -> None:
    """Write over every array a call returned (and every array inside a returned tuple)."""
    for x in result if isinstance(result, tuple) else (result,):
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.flags.writeable:
            x += 1000.0


def gradients(package, name: str, edit: bool) -> list[np.ndarray]:
    forward_name, backward_name, inputs, options = PAIRS[name]
    forward, backward = getattr(package, forward_name), getattr(package, backward_name)
    rng = {"rng": np.random.default_rng(3)} if "rng" in inspect.signature(forward).parameters else {}
    out, cache = forward(*inputs, **options, **rng)
    dout = normal(*out.shape, seed=9)
    if edit:
        edit_in_place(out)
    grads = backward(dout, cache)
    return [g for g in (grads if isinstance(grads, tuple) else (grads,)) if g is not None]


@pytest.mark.parametrize("package", [functional, kernels], ids=lambda p: p.__name__)
def test_every_public_forward_is_walked(package):
    walked = {PAIRS[name][0] for name in PAIRS}
    assert public_forwards(package) <= walked, f"add the new pairs to PAIRS: {public_forwards(package) - walked}"


@pytest.mark.parametrize("package", [functional, kernels], ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_editing_what_a_forward_returned_leaves_its_backward_alone(package, name):
    if not hasattr(package, PAIRS[name][0]):
        pytest.skip(f"{package.__name__} has no {PAIRS[name][0]}")
    for clean, edited in zip(gradients(package, name, edit=False), gradients(package, name, edit=True)):
        np.testing.assert_array_equal(edited, clean)


def module_cases():
    """(name, build the module, inputs, forward options); the module is rebuilt for every run."""
    x = normal(2, 5, 8)
    cases = [
        ("Linear", lambda: na.Linear(8, 3, rng=0), (x,), {}),
        ("Embedding", lambda: na.Embedding(6, 4, rng=0), (np.array([[1, 2], [5, 0]]),), {}),
        ("LayerNorm", lambda: na.LayerNorm(8), (x,), {}),
        ("GELU", lambda: na.GELU(), (x,), {}),
        ("GPT", lambda: GPT(7, 6, 2, 2, 8, dropout=0.2, rng=0), (np.array([[1, 2, 3], [6, 0, 4]]),), {}),
        ("GPT-llama", lambda: GPT(7, 6, 2, 2, 8, bias=False, n_kv_head=1, norm="rms", position="rope",
                                  mlp="swiglu", rng=0), (np.array([[1, 2, 3], [6, 0, 4]]),), {}),
    ]
    for impl in ("dense", "flash", "textbook", "textbook-flash"):
        cases.append((f"ScaledDotProductAttention-{impl}",
                      lambda impl=impl: na.ScaledDotProductAttention(0.2, impl=impl, rng=np.random.default_rng(1)),
                      QKV, {"is_causal": True}))
        for average in (True, False):
            cases.append((f"MultiHeadAttention-{impl}-average={average}",
                          lambda impl=impl: na.MultiHeadAttention(8, 2, dropout=0.2, batch_first=True, impl=impl,
                                                                  rng=0),
                          (x,), {"average_attn_weights": average, "is_causal": True}))
    return cases


@pytest.mark.parametrize("name, build, inputs, options", module_cases(), ids=lambda c: c if isinstance(c, str) else "")
def test_editing_what_a_module_returned_leaves_its_backward_alone(name, build, inputs, options):
    results = []
    for edit in (False, True):
        module = build()
        returned = module(*inputs, **options)
        out = returned[0] if isinstance(returned, tuple) else returned
        dout = normal(*out.shape, seed=4)
        if edit:
            edit_in_place(returned)
        grads = module.backward(dout)
        results.append(([g for g in (grads if isinstance(grads, tuple) else (grads,)) if g is not None],
                        {k: g.copy() for k, g in module.grads.items()}))
    (clean, clean_params), (edited, edited_params) = results
    for a, b in zip(edited, clean):
        np.testing.assert_array_equal(a, b)
    for key in clean_params:
        np.testing.assert_array_equal(edited_params[key], clean_params[key], err_msg=key)
