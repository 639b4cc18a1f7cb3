"""RoPE in both layouts from plain torch ops: the twins that the RoPE and layer tests compare against."""

from __future__ import annotations

from .numerics import require_torch


def torch_rope_half(x, positions, base):
    """Hugging Face's layout from plain torch ops: x * cos + rotate_half(x) * sin, angles repeated twice."""
    torch = require_torch()
    dim = x.shape[-1]
    inverse_frequency = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    theta = torch.as_tensor(positions, dtype=torch.float64)[:, None] * inverse_frequency
    cos, sin = torch.cat([theta, theta], -1).cos(), torch.cat([theta, theta], -1).sin()
    x1, x2 = x[..., : dim // 2], x[..., dim // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def torch_rope_interleaved(x, positions, base):
    """Meta's Llama layout from plain torch ops: features (2i, 2i+1) as one complex number times e^{i theta}."""
    torch = require_torch()
    dim = x.shape[-1]
    inverse_frequency = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    theta = torch.as_tensor(positions, dtype=torch.float64)[:, None] * inverse_frequency
    rotation = torch.polar(torch.ones_like(theta), theta)
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], dim // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2)


def torch_twin(interleaved):
    return torch_rope_interleaved if interleaved else torch_rope_half
