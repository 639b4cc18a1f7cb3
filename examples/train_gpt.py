"""Train a character-level GPT from scratch on the Python documentation, by hand-written backprop.

    python examples/train_gpt.py [--outdir examples/figures] [--steps N] [--n-layer N] [--n-embd N] ...

The model is nanoGPT's (numpy_attention.models.GPT: embeddings, pre-LayerNorm
blocks of causal self-attention and a GELU MLP, tied head), trained with
nanoGPT's AdamW grouping and gradient clipping. The text ships with Python:
``pydoc_data.topics``, about 465 000 characters of the language reference, so
nothing is downloaded. The last 10 % is held out. Prints a progress line per
interval, the unigram entropy of the characters (what a model that ignores the
context achieves) next to the validation loss, saves the loss curves and the
attention maps of every head of the first and last layer, and ends with a
generated sample.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
from _common import parser, pyplot, save

from numpy_attention import clip_grad_norm
from numpy_attention.models import GPT


def load_text() -> str:
    from pydoc_data import topics

    return "".join(topics.topics[name] for name in sorted(topics.topics))


def batches(data: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator):
    """Random windows (B, T) of the token stream and the same windows shifted by one (the targets)."""
    starts = rng.integers(0, len(data) - block_size - 1, batch_size)
    x = np.stack([data[s : s + block_size] for s in starts])
    y = np.stack([data[s + 1 : s + block_size + 1] for s in starts])
    return x, y


def estimate_loss(model: GPT, data: np.ndarray, args, rng: np.random.Generator) -> float:
    model.eval()
    losses = [float(model.forward(*batches(data, args.block_size, args.batch_size, rng))[1])
              for _ in range(args.eval_batches)]
    model.train()
    return float(np.mean(losses))


def learning_rate(step: int, args) -> float:
    """Linear warmup, then cosine decay to a tenth (nanoGPT's schedule)."""
    warmup = max(1, args.steps // 20)
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, args.steps - warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def plot_losses(plt, args, history, entropy):
    steps, train, val = zip(*history)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, train, "o-", label="train")
    ax.plot(steps, val, "s-", label="validation (held-out 10 %)")
    ax.axhline(entropy, color="gray", ls="--", label=f"unigram entropy {entropy:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title(f"Character-level GPT on pydoc_data.topics ({args.n_layer} layers, width {args.n_embd})")
    ax.legend()
    save(fig, args.outdir, "train_gpt_loss.png")
    plt.close(fig)


def plot_attention(plt, args, model, sample: np.ndarray, chars: list[str]):
    """Every head of the first and the last layer, one shared colour scale from 0 to the largest weight."""
    model.eval()
    model.forward(sample[None])
    model.train()
    weights = model.attention_weights()
    layers = sorted({0, args.n_layer - 1})
    maps = np.stack([weights[i][0] for i in layers])  # (layers, H, T, T)
    fig, axes = plt.subplots(len(layers), args.n_head, figsize=(3 * args.n_head, 3.2 * len(layers)),
                             squeeze=False, constrained_layout=True)
    labels = ["·" if chars[t] == " " else repr(chars[t])[1:-1] for t in sample]  # a visible space
    for row, layer in enumerate(layers):
        for head in range(args.n_head):
            ax = axes[row, head]
            image = ax.imshow(maps[row, head], cmap="viridis", vmin=0.0, vmax=float(maps.max()))
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            ax.set_xticks(range(len(sample)))
            ax.set_yticks(range(len(sample)))
            ax.set_xticklabels(labels, fontsize=5, family="monospace")
            ax.set_yticklabels(labels, fontsize=5, family="monospace")
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight (query row -> key column)")
    fig.suptitle(f"Attention of a held-out sample: {''.join(chars[t] for t in sample)!r}", fontsize=9)
    save(fig, args.outdir, "train_gpt_attention.png")
    plt.close(fig)


def blas_threads(threads: int):
    """Cap BLAS at ``threads`` (needs threadpoolctl); 0 leaves BLAS as it is."""
    if not threads:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("--threads needs threadpoolctl (pip install threadpoolctl); BLAS keeps its own thread count")
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="optimizer steps")
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--block-size", type=int, default=64, help="context length in characters")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-interval", type=int, default=100, help="steps between progress lines")
    p.add_argument("--eval-batches", type=int, default=8, help="batches per loss estimate")
    p.add_argument("--sample-tokens", type=int, default=300, help="characters generated at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--llama", action="store_true",
                   help="the Llama configuration: RMSNorm, RoPE, SwiGLU, half as many k/v heads, no biases")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (0: BLAS's own choice); at this model size the hand-offs between BLAS "
                        "threads cost more than they save, so 1 is the default")
    args = p.parse_args()
    for option in ("steps", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "eval_interval",
                   "eval_batches"):
        if getattr(args, option) < 1:
            p.error(f"--{option.replace('_', '-')} must be a positive int; got {getattr(args, option)}")
    if args.threads < 0:
        p.error(f"--threads must be >= 0; got {args.threads}")
    if args.n_embd % args.n_head:
        p.error(f"--n-embd ({args.n_embd}) must be a multiple of --n-head ({args.n_head})")

    with blas_threads(args.threads):
        run(args)


def run(args) -> None:
    text = load_text()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = np.array([lookup[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    counts = np.bincount(train, minlength=len(chars))
    frequencies = counts[counts > 0] / counts.sum()
    entropy = float(-(frequencies * np.log(frequencies)).sum())
    print(f"pydoc_data.topics: {len(text):,} characters, vocabulary {len(chars)}; "
          f"{len(train):,} for training, {len(val):,} held out")
    print(f"unigram entropy of the characters: {entropy:.4f} nats (a model that ignores the context)")

    rng = np.random.default_rng(args.seed)
    llama = dict(bias=False, n_kv_head=max(1, args.n_head // 2), norm="rms", position="rope", mlp="swiglu")
    model = GPT(len(chars), args.block_size, args.n_layer, args.n_head, args.n_embd, args.dropout,
                **(llama if args.llama else {}), rng=np.random.default_rng(args.seed), dtype=np.float32)
    optimizer = model.configure_optimizers(args.weight_decay, args.lr, (0.9, 0.99))
    print(f"{model!r}: {model.num_params():,} parameters; {args.steps} steps of batch {args.batch_size}")
    history, start = [], time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_interval == 0 or step == args.steps:
            train_loss, val_loss = estimate_loss(model, train, args, rng), estimate_loss(model, val, args, rng)
            history.append((step, train_loss, val_loss))
            print(f"step {step:5d}/{args.steps}  train {train_loss:.4f}  val {val_loss:.4f}  "
                  f"lr {learning_rate(min(step, args.steps - 1), args):.2e}  ({time.perf_counter() - start:.1f} s)",
                  flush=True)
        if step == args.steps:
            break
        optimizer.lr = learning_rate(step, args)
        model.forward(*batches(train, args.block_size, args.batch_size, rng))
        model.backward()
        clip_grad_norm(model, 1.0)
        optimizer.step()
        optimizer.zero_grad()
    elapsed = time.perf_counter() - start

    plt = pyplot()
    plot_losses(plt, args, history, entropy)
    sample = val[: min(args.block_size, 32)]
    plot_attention(plt, args, model, sample, chars)

    prompt = np.array([[lookup[c] for c in "def "]])
    generated = model.generate(prompt, args.sample_tokens, temperature=0.8, rng=np.random.default_rng(args.seed))
    print("sample:")
    print("".join(chars[t] for t in generated[0]))
    print(f"trained in {elapsed:.1f} s")
    print(f"unigram entropy: {entropy:.4f}")
    print(f"final validation loss: {history[-1][2]:.4f}")


if __name__ == "__main__":
    main()
