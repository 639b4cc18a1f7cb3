"""The options of today's models in the attention pairs: softcap, ALiBi, window, sinks, query_offset.

Every attention implementation is checked against a torch twin written from the
published formulas with plain ops (``gradcheck.torch_ops.attention_with_options``)
at 1e-10 relative in float64, on a grid that combines the options with grouped
heads, L != T, broadcast batches and offsets, and against central finite
differences; bad option values are refused naming the argument.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.impls import TILED_IMPLS, attention_impl
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients, torch_ops

SLOPES = 2.0 ** -np.arange(1.0, 5.0)  # 4 query heads
# Every implementation takes the options.
IMPLS = ["textbook", "textbook-flash", "dense", "flash"]
# name -> (q, k, v shapes, options); "sinks" is drawn per case.
GRID = {
    "softcap": (((2, 4, 5, 3), (2, 2, 7, 3), (2, 2, 7, 2)), dict(softcap=0.8)),
    "softcap-causal-large": (((1, 4, 6, 3), (1, 4, 6, 3), (1, 4, 6, 4)),
                             dict(softcap=2.0, is_causal=True, scale=9.0)),
    "alibi": (((2, 4, 5, 3), (2, 2, 7, 3), (2, 2, 7, 2)), dict(alibi_slopes=SLOPES)),
    "alibi-causal-offset": (((1, 4, 3, 3), (1, 2, 7, 3), (1, 2, 7, 2)), dict(alibi_slopes=SLOPES, is_causal=True,
                                                                              query_offset=4)),
    "window": (((2, 4, 6, 3), (2, 4, 6, 3), (2, 4, 6, 2)), dict(window=(2, 1))),
    "window-causal": (((1, 4, 9, 3), (1, 2, 9, 3), (1, 2, 9, 2)), dict(window=(3, 0), is_causal=True)),
    "window-left-open": (((1, 4, 5, 3), (1, 2, 8, 3), (1, 2, 8, 2)), dict(window=(None, 1))),
    "window-offset-empty-rows": (((1, 4, 5, 3), (1, 2, 6, 3), (1, 2, 6, 2)), dict(window=(0, 0), query_offset=3)),
    "sinks": (((2, 4, 5, 3), (2, 2, 7, 3), (2, 2, 7, 2)), dict(sinks=True)),
    "sinks-causal-window": (((1, 4, 7, 3), (1, 2, 7, 3), (1, 2, 7, 4)),
                            dict(sinks=True, is_causal=True, window=(2, 0))),
    "sinks-fully-masked": (((1, 4, 4, 3), (1, 4, 5, 3), (1, 4, 5, 2)), dict(sinks=True, attn_mask="empty-row")),
    "everything": (((2, 4, 6, 3), (1, 2, 8, 3), (1, 2, 8, 2)), dict(softcap=1.2, alibi_slopes=SLOPES, window=(3, 1),
                                                                    is_causal=True, sinks=True, query_offset=2)),
    "everything-bool-mask": (((2, 4, 5, 3), (2, 2, 6, 3), (2, 2, 6, 3)), dict(softcap=1.0, window=(1, 2), sinks=True,
                                                                             attn_mask="bool")),
    "float-mask-alibi": (((2, 4, 5, 3), (2, 2, 6, 3), (2, 2, 6, 3)), dict(alibi_slopes=SLOPES, attn_mask="float")),
}


def build(name: str, seed: int = 0):
    shapes, options = GRID[name]
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(shape) for shape in shapes)
    options = dict(options)
    if options.pop("sinks", False):
        options["sinks"] = rng.standard_normal(shapes[0][-3])
    kind = options.pop("attn_mask", None)
    scores = (shapes[0][-2], shapes[1][-2])
    if kind == "bool":
        options["attn_mask"] = rng.random(scores) > 0.3
    elif kind == "empty-row":
        options["attn_mask"] = np.ones(scores, dtype=bool)
        options["attn_mask"][1] = False
    elif kind == "float":
        options["attn_mask"] = rng.standard_normal(scores)
    return q, k, v, options


def assert_close(got: np.ndarray, expected: np.ndarray, tolerance: float, label: str = "") -> None:
    """Relative to the larger magnitude, and absolute at float64's rounding (1e-15) for a gradient that is 0.

    A query that sees one key has dS = P (dP - D) = 0 exactly in torch's softmax backward and to rounding
    in ours, where D comes from rowsum(dO * O): relative to 0, any rounding would count as 100 %.
    """
    assert got.shape == expected.shape, label
    assert rel_error(got, expected) < tolerance or np.abs(got - expected).max() < 1e-15, label


def run(impl: str, q, k, v, options, dout, block_size=2):
    forward, backward = attention_impl(impl)
    extra = {"block_size": block_size} if impl in TILED_IMPLS else {}
    out, cache = forward(q, k, v, **options, **extra)
    return [out, *backward(dout, cache)]


@pytest.mark.parametrize("name", sorted(GRID))
@pytest.mark.parametrize("impl", IMPLS)
def test_every_option_matches_the_torch_twin(impl, name):
    torch = require_torch()
    q, k, v, options = build(name)
    dout = random_like(np.random.default_rng(5), (*np.broadcast_shapes(q.shape[:-1], k.shape[:-3] + (1, 1)),
                                                   v.shape[-1]))
    got = run(impl, q, k, v, options, dout)
    tensors = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    sinks = options.get("sinks")
    if sinks is not None:
        tensors.append(torch.tensor(sinks, requires_grad=True))
    twin_options = {key: value for key, value in options.items() if key != "sinks"}
    out = torch_ops.attention_with_options(*tensors[:3], tensors[3] if sinks is not None else None, **twin_options)
    out.backward(torch.tensor(dout))
    expected = [out.detach().numpy(), *(t.grad.numpy() for t in tensors)]
    assert len(got) == len(expected)
    for label, a, b in zip(("out", "dq", "dk", "dv", "dsinks"), got, expected):
        assert_close(a, b, 1e-10, label)


@pytest.mark.parametrize("name", ["softcap-causal-large", "alibi-causal-offset", "sinks-causal-window", "everything"])
@pytest.mark.parametrize("impl", ["textbook", "textbook-flash"])
def test_every_option_matches_finite_differences(impl, name):
    q, k, v, options = build(name, seed=3)
    sinks = options.pop("sinks", None)
    forward, backward = attention_impl(impl)
    extra = {"block_size": (2, 3)} if impl in TILED_IMPLS else {}

    def f(q, k, v, *maybe_sinks):
        return forward(q, k, v, **options, **extra, **({"sinks": maybe_sinks[0]} if maybe_sinks else {}))

    inputs = [q, k, v] + ([sinks] if sinks is not None else [])
    out, cache = f(*inputs)
    dout = random_like(np.random.default_rng(4), out.shape)
    expected = numerical_gradients(lambda *xs: f(*xs)[0], inputs, dout)
    grads = backward(dout, cache)
    assert len(grads) == len(inputs)
    for grad, reference in zip(grads, expected):
        assert rel_error(grad, reference) < 1e-7


@pytest.mark.parametrize("name", sorted(GRID))
@pytest.mark.parametrize("block_size", [1, 3, (2, 5), None], ids=str)
def test_the_tiled_textbook_pair_equals_the_dense_one_for_every_tile_shape(name, block_size):
    q, k, v, options = build(name, seed=2)
    out_shape = np.broadcast_shapes(q.shape[:-1], k.shape[:-3] + (1, 1)) + (v.shape[-1],)
    dout = random_like(np.random.default_rng(6), out_shape)
    expected = run("textbook", q, k, v, options, dout)
    for a, b in zip(run("textbook-flash", q, k, v, options, dout, block_size), expected):
        assert_close(a, b, 1e-12)


def test_without_options_nothing_changes():
    q, k, v, _ = build("softcap")
    dout = random_like(np.random.default_rng(1), (2, 4, 5, 2))
    plain = run("textbook", q, k, v, {}, dout)
    explicit = run("textbook", q, k, v, dict(softcap=None, alibi_slopes=None, window=None, sinks=None,
                                             query_offset=0), dout)
    for a, b in zip(plain, explicit):
        np.testing.assert_array_equal(a, b)
    assert len(plain) == 4  # no dsinks without sinks


BAD = [
    ("window", (3,), TypeError, "window must be None or a pair"),
    ("window", (-1, 2), ValueError, "window"),
    ("window", (1.5, 2), TypeError, "window"),
    ("softcap", 0.0, ValueError, "softcap must be a positive"),
    ("softcap", -2.0, ValueError, "softcap"),
    ("alibi_slopes", np.ones(3), ValueError, r"alibi_slopes must have shape \(4,\)"),
    ("sinks", np.ones(5), ValueError, r"sinks must have shape \(4,\)"),
    ("sinks", np.ones(4, dtype=np.float32), TypeError, "sinks must have the scores' dtype float64"),
    ("query_offset", 1.0, TypeError, "query_offset must be an int"),
]


@pytest.mark.parametrize("option, value, error, message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
@pytest.mark.parametrize("impl", IMPLS)
def test_bad_option_values_are_refused_naming_the_argument(impl, option, value, error, message):
    q, k, v, _ = build("softcap")
    forward, _ = attention_impl(impl)
    with pytest.raises(error, match=message):
        forward(q, k, v, **{option: value})


@pytest.mark.parametrize("impl", IMPLS)
def test_per_head_options_need_a_head_axis(impl):
    forward, _ = attention_impl(impl)
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="sinks hold one value per query head"):
        forward(x, x, x, sinks=np.zeros(1))
