"""Whole models built from the functional pairs: nanoGPT's GPT, with its backward written by hand."""

from .gpt import GPT
from .kv_cache import KVCache

__all__ = ["GPT", "KVCache"]
