"""Malformed calls across the public API: each gives the right error type and a message naming the argument.

One table, one test. Every row is a call that must be rejected, the error type,
the argument the message has to name, and a pattern for what it received or
expected (a shape, a dtype, a value). Rows that need a weight file read it from
the ``bad_files`` fixture, which writes each broken file once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from helpers.bad_files import write_bad_files
from helpers.impls import attention_impl

import numpy_attention as na
from numpy_attention import functional as F


def zeros(*shape, dtype=np.float64):
    return np.zeros(shape, dtype)


def qkv(q=(2, 3, 4), k=(2, 5, 4), v=(2, 5, 3), dtype=np.float64):
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(s).astype(dtype) for s in (q, k, v))


def attention(**options):
    return F.attention_forward(*qkv(), **options)


def linear_module(dtype=np.float64):
    return na.Linear(4, 3, dtype=dtype, rng=np.random.default_rng(0))


def mha(**options):
    return na.MultiHeadAttention(4, 2, **options, rng=0)


def state(**replace):
    """Linear(4, 3)'s state dict with some entries replaced (None removes one)."""
    result = {**linear_module().state_dict(), **replace}
    return {name: value for name, value in result.items() if value is not None}


def flash_forward(*args, **kwargs):
    return attention_impl("flash")[0](*args, **kwargs)


def flash_backward(dout, cache):
    return attention_impl("flash")[1](dout, cache)


def flash_cache():
    return flash_forward(*qkv())[1]


def forwarded(module, *inputs):
    module(*inputs)
    return module


@dataclass(frozen=True)
class Bad:
    name: str
    call: Callable  # call(files) with files the mapping of bad weight files
    error: type
    argument: str  # must appear verbatim in the message
    detail: str = ""  # a regex for what was received / expected
    marks: tuple = ()  # pytest marks, for a known bug (a strict xfail)


BAD_CALLS = [
    # softmax
    Bad("softmax-bool", lambda f: F.softmax_forward(np.ones(3, bool)), TypeError, "x", "dtype bool"),
    Bad("softmax-complex", lambda f: F.softmax_forward(zeros(3).astype(complex)), TypeError, "x", "complex128"),
    Bad("softmax-str", lambda f: F.softmax_forward("logits"), TypeError, "x", "str"),
    Bad("softmax-ragged", lambda f: F.softmax_forward([[1.0, 2.0], [3.0]]), ValueError, "x", "ragged"),
    Bad("softmax-0d", lambda f: F.softmax_forward(np.float64(1.0)), ValueError, "x", r"at least 1.*\(\)"),
    Bad("softmax-axis-range", lambda f: F.softmax_forward(zeros(2, 3), axis=2), ValueError, "axis",
        r"\[-2, 2\).*got 2"),
    Bad("softmax-axis-float", lambda f: F.softmax_forward(zeros(2, 3), axis=1.0), TypeError, "axis", "float"),
    Bad("softmax-axis-bool", lambda f: F.softmax_forward(zeros(2, 3), axis=True), TypeError, "axis", "bool"),
    Bad("softmax-dout-shape", lambda f: F.softmax_backward(zeros(3, 2), F.softmax_forward(zeros(2, 3))[1]),
        ValueError, "dout", r"\(2, 3\).*\(3, 2\)"),
    Bad("softmax-dout-dtype", lambda f: F.softmax_backward(zeros(2, 3, dtype=np.float32),
                                                           F.softmax_forward(zeros(2, 3))[1]),
        TypeError, "dout", "float64.*float32"),
    Bad("softmax-dout-object", lambda f: F.softmax_backward(zeros(2, 3).astype(object),
                                                            F.softmax_forward(zeros(2, 3))[1]),
        TypeError, "dout", "object"),
    Bad("softmax-foreign-cache", lambda f: F.softmax_backward(zeros(2, 3), attention()[1]),
        TypeError, "cache", "SoftmaxCache.*AttentionCache"),
    # linear
    Bad("linear-weight-1d", lambda f: F.linear_forward(zeros(2, 4), zeros(4)), ValueError, "weight", r"\(4,\)"),
    Bad("linear-in-features", lambda f: F.linear_forward(zeros(2, 5), zeros(3, 4)), ValueError, "x", r"4.*\(2, 5\)"),
    Bad("linear-x-0d", lambda f: F.linear_forward(np.float64(1.0), zeros(3, 4)), ValueError, "x", r"\(\)"),
    Bad("linear-bias-shape", lambda f: F.linear_forward(zeros(2, 4), zeros(3, 4), zeros(4)),
        ValueError, "bias", r"\(3,\).*\(4,\)"),
    Bad("linear-mixed-dtype", lambda f: F.linear_forward(zeros(2, 4, dtype=np.float32), zeros(3, 4)),
        TypeError, "weight", "float32.*float64"),
    Bad("linear-x-object", lambda f: F.linear_forward(zeros(2, 4).astype(object), zeros(3, 4)),
        TypeError, "x", "object"),
    Bad("linear-weight-complex", lambda f: F.linear_forward(zeros(2, 4), zeros(3, 4).astype(complex)),
        TypeError, "weight", "complex"),
    Bad("linear-dout-shape", lambda f: F.linear_backward(zeros(2, 4), F.linear_forward(zeros(2, 4), zeros(3, 4))[1]),
        ValueError, "dout", r"\(2, 3\).*\(2, 4\)"),
    Bad("linear-swapped-args", lambda f: F.linear_backward(F.linear_forward(zeros(2, 4), zeros(3, 4))[1], zeros(2, 3)),
        TypeError, "cache", "LinearCache.*array of shape"),
    # attention: shapes
    Bad("attn-rank-1", lambda f: F.attention_forward(zeros(4), zeros(4), zeros(4)), ValueError, "q, k, v",
        "at least 2"),
    Bad("attn-ranks-differ", lambda f: F.attention_forward(*qkv(q=(3, 4), k=(1, 5, 4), v=(1, 5, 3))),
        ValueError, "q, k, v", r"\(3, 4\), \(1, 5, 4\)"),
    Bad("attn-embed-mismatch", lambda f: F.attention_forward(*qkv(k=(2, 5, 6))), ValueError, "q and k",
        r"\(2, 3, 4\).*\(2, 5, 6\)"),
    Bad("attn-key-length-mismatch", lambda f: F.attention_forward(*qkv(v=(2, 6, 3))), ValueError, "k and v",
        r"\(2, 5, 4\).*\(2, 6, 3\)"),
    Bad("attn-heads-not-divisible", lambda f: F.attention_forward(*qkv(q=(3, 3, 4))), ValueError, "Hq",
        "Hq = 3.*Hkv = 2"),
    Bad("attn-zero-kv-heads", lambda f: F.attention_forward(*qkv(k=(0, 5, 4), v=(0, 5, 3))), ValueError, "Hkv",
        "Hq = 2.*Hkv = 0"),
    Bad("attn-kv-heads-differ", lambda f: F.attention_forward(*qkv(v=(1, 5, 3))), ValueError, "k and v",
        "number of heads"),
    Bad("attn-batch-broadcast", lambda f: F.attention_forward(*qkv(q=(2, 2, 3, 4), k=(3, 2, 5, 4), v=(3, 2, 5, 3))),
        ValueError, "q, k, v", r"q: \(2,\), k: \(3,\)"),
    # attention: masks and options
    Bad("attn-mask-shape", lambda f: attention(attn_mask=np.ones((5, 3), bool)), ValueError, "attn_mask",
        r"\(5, 3\).*\(2, 3, 5\)"),
    Bad("attn-mask-enlarges", lambda f: attention(attn_mask=np.ones((4, 2, 3, 5), bool)), ValueError, "attn_mask",
        r"\(4, 2, 3, 5\).*\(2, 3, 5\)"),
    Bad("attn-mask-int", lambda f: attention(attn_mask=np.ones((3, 5), int)), TypeError, "attn_mask", "int64"),
    Bad("attn-mask-complex", lambda f: attention(attn_mask=np.ones((3, 5), complex)), TypeError, "attn_mask",
        "complex"),
    Bad("attn-mask-str", lambda f: attention(attn_mask="causal"), TypeError, "attn_mask", "str"),
    Bad("attn-mask-and-causal", lambda f: attention(attn_mask=np.ones((3, 5), bool), is_causal=True),
        ValueError, "attn_mask", "is_causal"),
    Bad("attn-dropout-1", lambda f: attention(dropout_p=1.0), ValueError, "dropout_p", r"\[0, 1\).*1\.0"),
    Bad("attn-dropout-negative", lambda f: attention(dropout_p=-0.1), ValueError, "dropout_p", "-0.1"),
    Bad("attn-dropout-nan", lambda f: attention(dropout_p=float("nan")), ValueError, "dropout_p", "nan"),
    Bad("attn-dropout-str", lambda f: attention(dropout_p="0.1"), TypeError, "dropout_p", "str"),
    Bad("attn-causal-str", lambda f: attention(is_causal="yes"), TypeError, "is_causal", "str"),
    Bad("attn-scale-inf", lambda f: attention(scale=float("inf")), ValueError, "scale", "inf"),
    Bad("attn-scale-array", lambda f: attention(scale=np.ones(2)), TypeError, "scale", "array of shape"),
    Bad("attn-rng-str", lambda f: attention(dropout_p=0.1, rng="seed"), TypeError, "rng", "str"),
    # attention: dtypes
    Bad("attn-q-bool", lambda f: F.attention_forward(np.ones((3, 4), bool), zeros(5, 4), zeros(5, 3)),
        TypeError, "q", "bool"),
    Bad("attn-k-complex", lambda f: F.attention_forward(zeros(3, 4), zeros(5, 4).astype(complex), zeros(5, 3)),
        TypeError, "k", "complex"),
    Bad("attn-v-object", lambda f: F.attention_forward(zeros(3, 4), zeros(5, 4), zeros(5, 3).astype(object)),
        TypeError, "v", "object"),
    Bad("attn-mixed-dtype", lambda f: F.attention_forward(*qkv()[:2], qkv(dtype=np.float32)[2]),
        TypeError, "q, k, v", "v: float32"),
    Bad("attn-q-list-of-str", lambda f: F.attention_forward([["a"]], zeros(1, 1), zeros(1, 1)), TypeError, "q", "<U1"),
    # attention: backward
    Bad("attn-dout-shape", lambda f: F.attention_backward(zeros(2, 3, 4), attention()[1]), ValueError, "dout",
        r"\(2, 3, 3\).*\(2, 3, 4\)"),
    Bad("attn-dout-dtype", lambda f: F.attention_backward(zeros(2, 3, 3, dtype=np.float32), attention()[1]),
        TypeError, "dout", "float64.*float32"),
    Bad("attn-dout-complex", lambda f: F.attention_backward(zeros(2, 3, 3).astype(complex), attention()[1]),
        TypeError, "dout", "complex"),
    Bad("attn-foreign-cache", lambda f: F.attention_backward(zeros(2, 3), F.softmax_forward(zeros(2, 3))[1]),
        TypeError, "cache", "AttentionCache.*SoftmaxCache"),
    Bad("sdpa-convenience-mask", lambda f: na.scaled_dot_product_attention(*qkv(), attn_mask=np.ones(4, bool)),
        ValueError, "attn_mask", r"\(4,\)"),
    # attention: the tiled pair (skipped until it is in the library)
    Bad("flash-block-size-zero", lambda f: flash_forward(*qkv(), block_size=0), ValueError, "block_size", "0"),
    Bad("flash-block-size-float", lambda f: flash_forward(*qkv(), block_size=2.0), TypeError, "block_size", "2.0"),
    Bad("flash-block-size-bool", lambda f: flash_forward(*qkv(), block_size=True), TypeError, "block_size", "bool"),
    Bad("flash-heads-not-divisible", lambda f: flash_forward(*qkv(q=(3, 3, 4))), ValueError, "Hq", "Hq = 3"),
    Bad("flash-mask-and-causal", lambda f: flash_forward(*qkv(), attn_mask=np.ones((3, 5), bool), is_causal=True),
        ValueError, "attn_mask", "is_causal"),
    Bad("flash-mask-shape", lambda f: flash_forward(*qkv(), attn_mask=np.ones((5, 3), bool)), ValueError,
        "attn_mask", r"\(5, 3\)"),
    Bad("flash-dropout-nan", lambda f: flash_forward(*qkv(), dropout_p=float("nan")), ValueError, "dropout_p", "nan"),
    Bad("flash-dout-shape", lambda f: flash_backward(zeros(2, 3, 4), flash_cache()), ValueError, "dout",
        r"\(2, 3, 3\).*\(2, 3, 4\)"),
    Bad("flash-dout-dtype", lambda f: flash_backward(zeros(2, 3, 3, dtype=np.float32), flash_cache()), TypeError,
        "dout", "float32"),
    Bad("flash-naive-cache", lambda f: flash_backward(zeros(2, 3, 3), attention()[1]), TypeError, "cache",
        "FlashAttentionCache.*AttentionCache"),
    Bad("naive-flash-cache", lambda f: F.attention_backward(zeros(2, 3, 3), flash_cache()), TypeError, "cache",
        "AttentionCache.*FlashAttentionCache"),
    # Linear module
    Bad("Linear-in-zero", lambda f: na.Linear(0, 3), ValueError, "in_features", "0"),
    Bad("Linear-out-float", lambda f: na.Linear(2, 2.5), TypeError, "out_features", "2.5"),
    Bad("Linear-dtype-int", lambda f: na.Linear(2, 3, dtype=np.int32), TypeError, "dtype", "int32"),
    Bad("Linear-dtype-unknown", lambda f: na.Linear(2, 3, dtype="float128x"), TypeError, "dtype", "float128x"),
    Bad("Linear-rng", lambda f: na.Linear(2, 3, rng=0.5), TypeError, "rng", "float"),
    Bad("Linear-bias-str", lambda f: na.Linear(2, 3, bias="no"), TypeError, "bias", "str"),
    Bad("Linear-x-features", lambda f: linear_module()(zeros(2, 5)), ValueError, "x", r"\(2, 5\)"),
    Bad("Linear-x-dtype", lambda f: linear_module()(zeros(2, 4, dtype=np.float32)), TypeError, "x", "float32"),
    Bad("Linear-backward-first", lambda f: linear_module().backward(zeros(2, 3)), ValueError, "backward()",
        "before forward"),
    Bad("Linear-dout-shape", lambda f: forwarded(linear_module(), zeros(2, 4)).backward(zeros(3, 3)),
        ValueError, "dout", r"\(2, 3\).*\(3, 3\)"),
    Bad("Linear-dout-dtype", lambda f: forwarded(linear_module(np.float32), zeros(2, 4, dtype=np.float32))
        .backward(zeros(2, 3)), TypeError, "dout", "float32.*float64"),
    Bad("Module-train-str", lambda f: linear_module().train("no"), TypeError, "mode", "str"),
    # ScaledDotProductAttention module
    Bad("SDPA-dropout-1", lambda f: na.ScaledDotProductAttention(dropout=1.0), ValueError, "dropout", "1.0"),
    Bad("SDPA-scale-nan", lambda f: na.ScaledDotProductAttention(scale=float("nan")), ValueError, "scale", "nan"),
    Bad("SDPA-impl", lambda f: na.ScaledDotProductAttention(impl="fast"), ValueError, "impl", "'fast'"),
    Bad("SDPA-backward-first", lambda f: na.ScaledDotProductAttention().backward(zeros(2, 3)), ValueError,
        "backward()", "before forward"),
    Bad("SDPA-mask-dtype", lambda f: na.ScaledDotProductAttention()(*qkv(), attn_mask=np.ones((3, 5), np.int8)),
        TypeError, "attn_mask", "int8"),
    Bad("SDPA-dout-shape", lambda f: forwarded(na.ScaledDotProductAttention(), *qkv()).backward(zeros(2, 3, 4)),
        ValueError, "dout", r"\(2, 3, 3\)"),
    # MultiHeadAttention
    Bad("MHA-heads-not-divisible", lambda f: na.MultiHeadAttention(6, 4), ValueError, "embed_dim",
        "embed_dim=6, num_heads=4"),
    Bad("MHA-kv-heads-not-divisor", lambda f: na.MultiHeadAttention(6, 3, num_kv_heads=2), ValueError,
        "num_kv_heads", "num_heads=3, num_kv_heads=2"),
    Bad("MHA-kv-heads-zero", lambda f: na.MultiHeadAttention(4, 2, num_kv_heads=0), ValueError, "num_kv_heads", "0"),
    Bad("MHA-kdim-float", lambda f: na.MultiHeadAttention(4, 2, kdim=2.5), TypeError, "kdim", "2.5"),
    Bad("MHA-add-bias-kv-str", lambda f: na.MultiHeadAttention(4, 2, add_bias_kv="yes"), TypeError, "add_bias_kv",
        "str"),
    Bad("MHA-query-width", lambda f: mha()(zeros(2, 3, 5)), ValueError, "query", r"embed_dim = 4.*\(2, 3, 5\)"),
    Bad("MHA-key-width", lambda f: mha(kdim=3)(zeros(2, 3, 4), zeros(2, 5, 4), zeros(2, 5, 4)), ValueError, "key",
        r"kdim = 3.*\(2, 5, 4\)"),
    Bad("MHA-value-width", lambda f: mha(vdim=2)(zeros(2, 3, 4), zeros(2, 5, 4), zeros(2, 5, 4)), ValueError,
        "value", r"vdim = 2.*\(2, 5, 4\)"),
    Bad("MHA-query-4d", lambda f: mha()(zeros(1, 2, 3, 4)), ValueError, "query", r"\(1, 2, 3, 4\)"),
    Bad("MHA-batch-mismatch", lambda f: mha()(zeros(2, 3, 4), zeros(3, 5, 4), zeros(3, 5, 4)), ValueError,
        "query and key", r"\(2, 3, 4\).*\(3, 5, 4\)"),
    Bad("MHA-key-without-value", lambda f: mha()(zeros(2, 3, 4), zeros(2, 5, 4)), ValueError, "key and value",
        "value None"),
    Bad("MHA-query-dtype", lambda f: mha()(zeros(2, 3, 4, dtype=np.float32)), TypeError, "query", "float32"),
    Bad("MHA-attn-mask-shape", lambda f: mha()(zeros(2, 3, 4), attn_mask=np.zeros((3, 4), bool)), ValueError,
        "attn_mask", r"\(3, 3\).*\(4, 3, 3\).*\(3, 4\)"),
    Bad("MHA-padding-mask-shape", lambda f: mha()(zeros(2, 3, 4), key_padding_mask=np.zeros((3, 2), bool)),
        ValueError, "key_padding_mask", r"\(2, 3\).*\(3, 2\)"),
    Bad("MHA-mixed-mask-kinds", lambda f: mha()(zeros(2, 3, 4), attn_mask=zeros(3, 3),
                                                key_padding_mask=np.zeros((2, 3), bool)),
        TypeError, "key_padding_mask and attn_mask", "bool.*float64"),
    Bad("MHA-attn-mask-int", lambda f: mha()(zeros(2, 3, 4), attn_mask=np.zeros((3, 3), int)), TypeError,
        "attn_mask", "int64"),
    Bad("MHA-need-weights-none", lambda f: mha()(zeros(2, 3, 4), need_weights=None), TypeError, "need_weights",
        "None"),
    Bad("MHA-backward-first", lambda f: mha().backward(zeros(2, 3, 4)), ValueError, "backward()", "before forward"),
    Bad("MHA-dout-shape", lambda f: forwarded(mha(), zeros(2, 3, 4)).backward(zeros(2, 4, 3)), ValueError, "dout",
        r"\(2, 3, 4\).*\(2, 4, 3\)"),
    Bad("MHA-dout-dtype", lambda f: forwarded(mha(), zeros(2, 3, 4)).backward(zeros(2, 3, 4, dtype=np.float32)),
        TypeError, "dout", "float32"),
    Bad("MHA-state-missing-bias-k", lambda f: mha(add_bias_kv=True).load_state_dict(mha().state_dict()),
        ValueError, "state_dict", r"missing \['bias_k', 'bias_v'\]"),
    Bad("MHA-state-torch-packed-names", lambda f: mha().load_state_dict(
        {"in_proj_weight": zeros(12, 4), "in_proj_bias": zeros(12), "out_proj.weight": zeros(4, 4),
         "out_proj.bias": zeros(4)}), ValueError, "state_dict", r"unexpected \['in_proj_bias', 'in_proj_weight'\]"),
    Bad("MHA-state-kv-heads", lambda f: mha().load_state_dict(mha(num_kv_heads=1).state_dict()), ValueError,
        "state_dict['k_proj.weight']", r"\(4, 4\).*\(2, 4\)"),
    Bad("MHA-file-kv-heads", lambda f: mha().load(f["mha_one_kv_head"]), ValueError, "mha_one_kv_head.npz",
        r"k_proj.weight.*\(4, 4\).*\(2, 4\)"),
    # Embedding, cross-entropy, Adam
    Bad("embedding-float-indices", lambda f: F.embedding_forward(zeros(2), zeros(5, 3)), TypeError, "indices",
        "float64"),
    Bad("embedding-index-range", lambda f: F.embedding_forward(np.array([1, 5]), zeros(5, 3)), ValueError,
        "indices", r"\[0, 5\).*got 5"),
    Bad("embedding-weight-1d", lambda f: F.embedding_forward(np.array([1]), zeros(5)), ValueError, "weight",
        r"\(5,\)"),
    Bad("embedding-padding-idx", lambda f: na.Embedding(5, 3, padding_idx=5), ValueError, "padding_idx",
        r"\[-5, 5\).*5"),
    Bad("embedding-dout-shape", lambda f: F.embedding_backward(zeros(2, 3), F.embedding_forward(np.array([1]),
                                                                                              zeros(5, 3))[1]),
        ValueError, "dout", r"\(1, 3\).*\(2, 3\)"),
    Bad("embedding-foreign-cache", lambda f: F.embedding_backward(zeros(3), F.softmax_forward(zeros(3))[1]),
        TypeError, "cache", "EmbeddingCache"),
    Bad("Embedding-backward-first", lambda f: na.Embedding(5, 3).backward(zeros(1, 3)), ValueError, "backward()",
        "before forward"),
    Bad("cross-entropy-target-shape", lambda f: F.cross_entropy_forward(zeros(2, 4), np.zeros(3, int)), ValueError,
        "target", r"\(2,\).*\(3,\)"),
    Bad("cross-entropy-target-float", lambda f: F.cross_entropy_forward(zeros(2, 4), zeros(2)), TypeError, "target",
        "float64"),
    Bad("cross-entropy-reduction", lambda f: F.cross_entropy_forward(zeros(2, 4), np.zeros(2, int), reduction="avg"),
        ValueError, "reduction", "'avg'"),
    Bad("cross-entropy-foreign-cache", lambda f: F.cross_entropy_backward(1.0, F.softmax_forward(zeros(3))[1]),
        TypeError, "cache", "CrossEntropyCache"),
    Bad("Adam-lr", lambda f: na.Adam(linear_module(), lr=-1.0), ValueError, "lr", "-1.0"),
    Bad("Adam-betas", lambda f: na.Adam(linear_module(), betas=(0.9, 1.0)), ValueError, "betas[1]", "1.0"),
    Bad("Adam-modules", lambda f: na.Adam([linear_module(), "x"]), TypeError, "modules", "str"),
    # load_state_dict
    Bad("state-not-mapping", lambda f: linear_module().load_state_dict([("weight", zeros(3, 4))]), TypeError,
        "state_dict", "list"),
    Bad("state-missing-key", lambda f: linear_module().load_state_dict(state(bias=None)), ValueError, "state_dict",
        r"missing \['bias'\]"),
    Bad("state-extra-key", lambda f: linear_module().load_state_dict(state(scale=zeros(1))), ValueError,
        "state_dict", r"unexpected \['scale'\]"),
    Bad("state-shape", lambda f: linear_module().load_state_dict(state(weight=zeros(4, 3))), ValueError,
        "state_dict['weight']", r"\(3, 4\).*\(4, 3\)"),
    Bad("state-nan", lambda f: linear_module().load_state_dict(state(bias=np.array([0.0, np.nan, 0.0]))),
        ValueError, "state_dict['bias']", "NaN"),
    Bad("state-inf", lambda f: linear_module().load_state_dict(state(weight=np.full((3, 4), -np.inf))),
        ValueError, "state_dict['weight']", "inf"),
    Bad("state-overflows-float32", lambda f: linear_module(np.float32).load_state_dict(state(bias=np.full(3, 1e300))),
        ValueError, "state_dict['bias']", "float32"),
    Bad("state-complex", lambda f: linear_module().load_state_dict(state(weight=zeros(3, 4).astype(complex))),
        TypeError, "state_dict['weight']", "complex"),
    Bad("state-bool", lambda f: linear_module().load_state_dict(state(bias=np.ones(3, bool))), TypeError,
        "state_dict['bias']", "bool"),
    Bad("state-list", lambda f: linear_module().load_state_dict(state(bias=[0.0, 0.0, 0.0])), TypeError,
        "state_dict['bias']", "list"),
    # weight files
    Bad("file-truncated", lambda f: linear_module().load(f["truncated"]), ValueError, "truncated.npz"),
    Bad("file-garbage", lambda f: linear_module().load(f["garbage"]), ValueError, "garbage.npz"),
    Bad("file-pickled-object", lambda f: linear_module().load(f["pickled"]), ValueError, "pickled.npz", "pickle"),
    Bad("file-other-shapes", lambda f: linear_module().load(f["other_shapes"]), ValueError, "other_shapes.npz",
        r"state_dict\['weight'\].*\(3, 4\).*\(3, 5\)"),
    Bad("file-other-keys", lambda f: linear_module().load(f["other_keys"]), ValueError, "other_keys.npz",
        r"missing \['bias'\]"),
    Bad("file-complex", lambda f: linear_module().load(f["complex"]), ValueError, "complex.npz", "complex"),
    Bad("file-single-npy", lambda f: linear_module().load(f["single"]), ValueError, "single.npy", "single array"),
    Bad("file-bad-crc", lambda f: linear_module().load(f["bad_crc"]), ValueError, "bad_crc.npz", "CRC"),
    Bad("file-corrupt-deflate", lambda f: linear_module().load(f["bad_deflate"]), ValueError, "bad_deflate.npz"),
    Bad("file-huge-shape", lambda f: linear_module().load(f["huge_shape"]), ValueError, "huge_shape.npz",
        "MemoryError"),
    Bad("load-path-int", lambda f: linear_module().load(3), TypeError, "path", "int"),
    Bad("save-path-none", lambda f: linear_module().save(None), TypeError, "path", "None"),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return write_bad_files(tmp_path_factory.mktemp("weights"))


def test_the_table_is_large_and_distinct():
    assert len(BAD_CALLS) >= 40
    assert len({bad.name for bad in BAD_CALLS}) == len(BAD_CALLS)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("bad", [pytest.param(bad, marks=bad.marks, id=bad.name) for bad in BAD_CALLS])
def test_malformed_call_is_rejected_naming_the_argument(bad, bad_files):
    with pytest.raises(bad.error) as info:
        bad.call(bad_files)
    message = str(info.value)
    assert type(info.value) is bad.error, f"{type(info.value).__name__}: {message}"
    assert bad.argument in message, message
    assert re.search(bad.detail, message), message
