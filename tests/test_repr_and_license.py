"""Modules print their arguments (as torch's do); the repository carries the MIT license setup.cfg names."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest

import numpy_attention as na

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"Linear": na.Linear, "Embedding": na.Embedding, "MultiHeadAttention": na.MultiHeadAttention,
         "ScaledDotProductAttention": na.ScaledDotProductAttention, "float32": np.float32}


@pytest.mark.parametrize("module, expected", [
    (lambda: na.Linear(4, 3), "Linear(in_features=4, out_features=3, bias=True)"),
    (lambda: na.Linear(4, 3, bias=False, dtype=np.float32),
     "Linear(in_features=4, out_features=3, bias=False, dtype=float32)"),
    (lambda: na.Embedding(10, 3, padding_idx=0), "Embedding(num_embeddings=10, embedding_dim=3, padding_idx=0)"),
    (lambda: na.ScaledDotProductAttention(), "ScaledDotProductAttention()"),
    (lambda: na.ScaledDotProductAttention(0.1, impl="flash"), "ScaledDotProductAttention(dropout=0.1, impl='flash')"),
    (lambda: na.MultiHeadAttention(64, 8), "MultiHeadAttention(embed_dim=64, num_heads=8)"),
    (lambda: na.MultiHeadAttention(64, 8, dropout=0.1, add_bias_kv=True, kdim=16, batch_first=True, num_kv_heads=2),
     "MultiHeadAttention(embed_dim=64, num_heads=8, dropout=0.1, add_bias_kv=True, kdim=16, batch_first=True, "
     "num_kv_heads=2)"),
])
def test_repr_shows_the_arguments_and_rebuilds_the_module(module, expected):
    original = module()
    assert repr(original) == str(original) == expected
    rebuilt = eval(expected, dict(NAMES))  # the repr is the call that builds an equal module
    assert repr(rebuilt) == expected
    assert {k: v.shape for k, v in rebuilt.params.items()} == {k: v.shape for k, v in original.params.items()}


def test_a_module_without_options_prints_its_class():
    class Scale(na.Module):
        pass

    assert repr(Scale()) == "Scale()"


def test_the_license_is_mit_as_setup_cfg_says():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 numpy_attention contributors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "MIT"
