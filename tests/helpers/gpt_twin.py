"""A torch twin of nanoGPT's model.py, written here from plain torch modules, for the GPT tests.

Used by tests/test_gpt*.py and by benchmarks/gpt.py (run from the repository root).
Same module tree, so the same parameter names: ``transformer.{wte, wpe, drop, h, ln_f}``,
``lm_head`` tied to ``wte``. Attention is the textbook softmax with a causal mask from
``torch.tril`` (no SDPA), GELU is ``F.gelu`` (exact erf), LayerNorm ``nn.LayerNorm(bias=...)``.
"""

from __future__ import annotations

import math

import numpy as np


def make_twin(torch, vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0, bias=True,
              dtype=None, sdpa=False, n_kv_head=None, norm="layer", position="learned", mlp="gelu",
              rope_base=10000.0):
    """The twin; ``sdpa=True`` runs nanoGPT's fast path, ``F.scaled_dot_product_attention(is_causal=True)``.

    The Llama options as the numpy GPT's: RMSNorm written out (``x * rsqrt(mean(x^2) + eps) * w``),
    RoPE as Hugging Face's Llama (``rotate_half``, ``cat(freqs, freqs)``), GQA by
    ``repeat_interleave`` of the k/v heads, SwiGLU as ``F.silu(c_gate(x)) * c_fc(x)``.
    """
    nn, F = torch.nn, torch.nn.functional
    n_kv_head = n_kv_head or n_head
    head_dim = n_embd // n_head

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n_embd))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight

    def make_norm():
        return RMSNorm() if norm == "rms" else nn.LayerNorm(n_embd, bias=bias)

    def rotate_half(x):
        x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2 :]
        return torch.cat((-x2, x1), dim=-1)

    def rope(x):
        T = x.shape[-2]
        inv_freq = 1.0 / (rope_base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return x * emb.cos().to(x.dtype) + rotate_half(x) * emb.sin().to(x.dtype)

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, (n_head + 2 * n_kv_head) * head_dim, bias=bias)
            self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
            self.attn_dropout = nn.Dropout(dropout)
            self.resid_dropout = nn.Dropout(dropout)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split([n_head * head_dim, n_kv_head * head_dim, n_kv_head * head_dim], dim=2)
            q = q.view(B, T, n_head, head_dim).transpose(1, 2)
            k, v = (t.view(B, T, n_kv_head, head_dim).transpose(1, 2) for t in (k, v))
            if position == "rope":
                q, k = rope(q), rope(k)
            k, v = k.repeat_interleave(n_head // n_kv_head, dim=1), v.repeat_interleave(n_head // n_kv_head, dim=1)
            if sdpa:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout if self.training else 0.0,
                                                   is_causal=True)
                return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
            att = self.attn_dropout(torch.softmax(att.masked_fill(~causal, float("-inf")), dim=-1))
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
            if mlp == "swiglu":
                self.c_gate = nn.Linear(n_embd, 4 * n_embd, bias=bias)
            self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            hidden = F.silu(self.c_gate(x)) * self.c_fc(x) if mlp == "swiglu" else F.gelu(self.c_fc(x))
            return self.dropout(self.c_proj(hidden))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = make_norm()
            self.attn = CausalSelfAttention()
            self.ln_2 = make_norm()
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class TwinGPT(nn.Module):
        def __init__(self):
            super().__init__()
            modules = dict(wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
                           drop=nn.Dropout(dropout), h=nn.ModuleList([Block() for _ in range(n_layer)]),
                           ln_f=make_norm())
            if position == "rope":
                del modules["wpe"]
            self.transformer = nn.ModuleDict(modules)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight

        def forward(self, idx, targets=None):
            T = idx.shape[1]
            x = self.transformer.wte(idx)
            if position != "rope":
                x = x + self.transformer.wpe(torch.arange(T))
            x = self.transformer.drop(x)
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    return TwinGPT().to(dtype or torch.float64)


def load_ours_into(torch, twin, model):
    """Copy the numpy GPT's state dict into the twin (both keys of the tied weight)."""
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})


def nanogpt_groups(twin, weight_decay):
    params = [p for _, p in twin.named_parameters()]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def batch(rng, vocab_size, shape, ignored=0):
    idx = rng.integers(0, vocab_size, shape)
    targets = rng.integers(0, vocab_size, shape)
    if ignored:
        targets.flat[rng.choice(targets.size, ignored, replace=False)] = -1
    return idx, targets


def as_numpy(tensor):
    return tensor.detach().numpy().astype(np.float64)


def assert_matches_twin(torch, model, twin, idx, targets, rtol=1e-10):
    """One forward and backward of both: logits, loss and every parameter gradient, by nanoGPT's names."""
    from helpers.numerics import rel_error

    logits, loss = model(idx, targets)
    model.backward()
    ref_logits, ref_loss = twin(torch.tensor(idx), torch.tensor(targets))
    ref_loss.backward()
    assert rel_error(logits, as_numpy(ref_logits)) < rtol
    assert abs(float(loss) - ref_loss.item()) < rtol * abs(ref_loss.item())
    named = dict(twin.named_parameters())
    assert list(named) == list(model.grads)  # nanoGPT's names, in nanoGPT's order
    for name, param in named.items():
        assert rel_error(model.grads[name], as_numpy(param.grad)) < rtol, name
