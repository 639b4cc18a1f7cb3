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
              dtype=None, sdpa=False):
    """The twin; ``sdpa=True`` runs nanoGPT's fast path, ``F.scaled_dot_product_attention(is_causal=True)``."""
    nn, F = torch.nn, torch.nn.functional

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
            self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
            self.attn_dropout = nn.Dropout(dropout)
            self.resid_dropout = nn.Dropout(dropout)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
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
            self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class TwinGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
                drop=nn.Dropout(dropout), h=nn.ModuleList([Block() for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd, bias=bias)))
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight

        def forward(self, idx, targets=None):
            T = idx.shape[1]
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T)))
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
