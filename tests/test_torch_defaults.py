"""Every argument that shares a name with torch's takes torch's default (issue 16, item 1).

The one deliberate exception is ``dtype``: torch's None means its global default
(float32); ours is float64, the dtype the gradient checks need (SPEC.md).
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from helpers.numerics import require_torch

import numpy_attention as na
from numpy_attention.functional import cross_entropy_forward, embedding_forward

NOT_COMPARED = {"self", "dtype", "device"}


def defaults(signature: inspect.Signature) -> dict:
    return {name: p.default for name, p in signature.parameters.items() if name not in NOT_COMPARED}


def differences(ours, theirs) -> list[str]:
    """Shared names whose defaults differ; a torch argument without a default may have one here
    (``key=None`` means self-attention)."""
    mine = defaults(ours if isinstance(ours, inspect.Signature) else inspect.signature(ours))
    torch_side = defaults(theirs if isinstance(theirs, inspect.Signature) else inspect.signature(theirs))
    return [
        f"{name}: ours {mine[name]!r}, torch {torch_side[name]!r}"
        for name in sorted(set(mine) & set(torch_side))
        if torch_side[name] is not inspect.Parameter.empty and not equal(mine[name], torch_side[name])
    ]


def equal(a, b) -> bool:
    """Equal values of the same kind (0.0 equals torch's 0; False does not equal 0 or None)."""
    return isinstance(a, bool) == isinstance(b, bool) and (a is None) == (b is None) and a == b


def sdpa_signature(torch) -> inspect.Signature:
    """torch's SDPA is a builtin without a signature: read it from the first line of its docstring."""
    line = re.search(r"scaled_dot_product_attention\((.*?)\)", torch.nn.functional.scaled_dot_product_attention.__doc__,
                     re.S)
    params = []
    for part in line.group(1).split(","):
        name, _, default = part.strip().partition("=")
        value = inspect.Parameter.empty if not default else eval(default)  # literals: None, 0.0, False
        params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value))
    return inspect.Signature(params)


def test_multihead_attention_is_seq_first_by_default_like_torch():
    module = na.MultiHeadAttention(4, 2, rng=0)
    assert module.batch_first is False
    x = np.random.default_rng(0).standard_normal((5, 2, 4))  # (L, N, E)
    out, weights = module(x)
    assert out.shape == (5, 2, 4) and weights.shape == (2, 5, 5)


@pytest.mark.parametrize("name", ["MultiHeadAttention", "MultiHeadAttention.forward", "Linear", "Embedding",
                                  "Adam", "scaled_dot_product_attention", "ScaledDotProductAttention",
                                  "cross_entropy_forward", "embedding_forward"])
def test_shared_argument_names_take_torch_defaults(name):
    torch = require_torch()
    pairs = {
        "MultiHeadAttention": (na.MultiHeadAttention, torch.nn.MultiheadAttention),
        "MultiHeadAttention.forward": (na.MultiHeadAttention.forward, torch.nn.MultiheadAttention.forward),
        "Linear": (na.Linear, torch.nn.Linear),
        "Embedding": (na.Embedding, torch.nn.Embedding),
        "Adam": (na.Adam, torch.optim.Adam),
        "scaled_dot_product_attention": (na.scaled_dot_product_attention, sdpa_signature(torch)),
        "cross_entropy_forward": (cross_entropy_forward, torch.nn.functional.cross_entropy),
        "embedding_forward": (embedding_forward, torch.nn.functional.embedding),
    }
    if name == "ScaledDotProductAttention":  # the module splits SDPA's arguments between __init__ and forward
        ours = inspect.signature(na.ScaledDotProductAttention)
        forward = inspect.signature(na.ScaledDotProductAttention.forward)
        merged = inspect.Signature([*ours.parameters.values(),
                                    *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                      for p in forward.parameters.values() if p.name != "self")])
        ours_sig, theirs = merged, sdpa_signature(torch)
    else:
        ours_sig, theirs = pairs[name]
    shared = set(defaults(ours_sig if isinstance(ours_sig, inspect.Signature) else inspect.signature(ours_sig)))
    assert shared & set(defaults(theirs if isinstance(theirs, inspect.Signature) else inspect.signature(theirs)))
    assert differences(ours_sig, theirs) == []
