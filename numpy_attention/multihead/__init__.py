"""Multi-head attention, torch.nn.MultiheadAttention's API, every gradient derived by hand.

- :mod:`.module`: the ``MultiHeadAttention`` module, forward and backward;
- :mod:`.masks`: torch's ``attn_mask`` / ``key_padding_mask`` / ``is_causal`` as one mask;
- :mod:`.torch_interop`: ``from_torch`` / ``to_torch`` (torch imported lazily).
"""

from .module import MultiHeadAttention

__all__ = ["MultiHeadAttention"]
