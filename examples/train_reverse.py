"""Train a tiny attention model to reverse sequences, by hand-written backprop and Adam.

    python examples/train_reverse.py [--outdir examples/figures] [--epochs N] [--train-size N]

The model, in numpy_attention alone:

    x      = token_embedding(tokens) + position_embedding(0..7)    (B, 8, D)
    h, P   = MultiHeadAttention(x)                                 (B, 8, D), P (B, 8, 8)
    logits = Linear(h)                                             (B, 8, 10)
    loss   = cross_entropy(logits, reversed tokens)

and its backward is the forward read bottom-up, one module at a time (no
autograd anywhere). The input sequences are 8 tokens over a vocabulary of 10;
the target is the same sequence reversed, so output position i must copy input
position 7 - i: attention learns the anti-diagonal. Accuracy is measured on
held-out sequences that never appear in training. Prints a line per epoch,
saves the loss curve and the learned attention map, and ends with
``final accuracy: X``.
"""

from __future__ import annotations

import time

import numpy as np
from _common import heatmap, parser, pyplot, save

from numpy_attention import Adam, Embedding, Linear, MultiHeadAttention
from numpy_attention.functional import cross_entropy_backward, cross_entropy_forward

SEQ_LEN, VOCAB = 8, 10


class ReverseModel:
    """Token and position embeddings, one self-attention layer, a position-wise output layer."""

    def __init__(self, embed_dim: int, num_heads: int, rng: np.random.Generator) -> None:
        self.token_embedding = Embedding(VOCAB, embed_dim, rng=rng)
        self.position_embedding = Embedding(SEQ_LEN, embed_dim, rng=rng)
        self.attention = MultiHeadAttention(embed_dim, num_heads, batch_first=True, rng=rng)
        self.output = Linear(embed_dim, VOCAB, rng=rng)
        self.modules = [self.token_embedding, self.position_embedding, self.attention, self.output]

    def forward(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tokens (B, L) -> logits (B, L, VOCAB) and the head-averaged attention weights (B, L, L)."""
        x = self.token_embedding(tokens) + self.position_embedding(np.arange(tokens.shape[1]))
        hidden, weights = self.attention(x)
        return self.output(hidden), weights

    def backward(self, d_logits: np.ndarray) -> None:
        """Accumulate every parameter's gradient, from d_logits (B, L, VOCAB)."""
        d_hidden = self.output.backward(d_logits)
        dx = self.attention.backward(d_hidden)  # self-attention: the sum of the q, k and v paths
        self.token_embedding.backward(dx)
        # One (L, D) block of positions was added to every sequence: a copy's backward is a sum.
        self.position_embedding.backward(dx.sum(axis=0))


def reverse_task(rng: np.random.Generator, train_size: int, test_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct random sequences (N, 8): a training set, and a held-out set disjoint from it."""
    sequences = np.unique(rng.integers(0, VOCAB, size=(2 * (train_size + test_size), SEQ_LEN)), axis=0)
    sequences = rng.permutation(sequences)[: train_size + test_size]
    return sequences[:train_size], sequences[train_size:]


def loss_and_gradient(model: ReverseModel, tokens: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of predicting the reversed sequence; backprop fills the modules' grads."""
    logits, _ = model.forward(tokens)
    targets = tokens[:, ::-1]
    loss, cache = cross_entropy_forward(logits.reshape(-1, VOCAB), targets.reshape(-1))
    model.backward(cross_entropy_backward(1.0, cache).reshape(logits.shape))
    return float(loss), logits


def accuracy(model: ReverseModel, tokens: np.ndarray) -> float:
    logits, _ = model.forward(tokens)
    return float((logits.argmax(axis=-1) == tokens[:, ::-1]).mean())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    p.add_argument("--train-size", type=int, default=2048, help="training sequences")
    p.add_argument("--test-size", type=int, default=1000, help="held-out sequences")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--num-heads", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for option in ("epochs", "train_size", "test_size", "batch_size", "embed_dim", "num_heads"):
        if getattr(args, option) < 1:
            p.error(f"--{option.replace('_', '-')} must be a positive int; got {getattr(args, option)}")

    rng = np.random.default_rng(args.seed)
    train, test = reverse_task(rng, args.train_size, args.test_size)
    model = ReverseModel(args.embed_dim, args.num_heads, rng)
    optimizer = Adam(model.modules, lr=args.lr)
    print(f"reversing {SEQ_LEN} tokens over a vocabulary of {VOCAB}: "
          f"{len(train)} training and {len(test)} held-out sequences")

    start, step_losses, test_accuracies = time.perf_counter(), [], [accuracy(model, test)]
    print(f"untrained held-out token accuracy {test_accuracies[0]:.4f} (chance: {1 / VOCAB:.2f})")
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(train))
        epoch_losses = []
        for first in range(0, len(train), args.batch_size):
            optimizer.zero_grad()
            loss, _ = loss_and_gradient(model, train[order[first:first + args.batch_size]])
            optimizer.step()
            epoch_losses.append(loss)
        step_losses += epoch_losses
        test_accuracies.append(accuracy(model, test))
        print(f"epoch {epoch:3d}  loss {np.mean(epoch_losses):.4f}  "
              f"held-out token accuracy {test_accuracies[-1]:.4f}  ({time.perf_counter() - start:.1f} s)")

    _, weights = model.forward(test)
    attention_map = weights.mean(axis=0)  # (L, L), averaged over heads and held-out sequences
    anti_diagonal = attention_map[np.arange(SEQ_LEN), SEQ_LEN - 1 - np.arange(SEQ_LEN)]
    print(f"mean attention on the anti-diagonal (query i -> key {SEQ_LEN - 1} - i): {anti_diagonal.mean():.4f}")

    plt = pyplot()
    fig, loss_axis = plt.subplots(figsize=(7, 4))
    steps_per_epoch = len(step_losses) / args.epochs
    loss_axis.plot(np.arange(1, len(step_losses) + 1) / steps_per_epoch, step_losses, lw=0.8)
    loss_axis.set_yscale("log")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss (cross-entropy, per batch)")
    accuracy_axis = loss_axis.twinx()
    accuracy_axis.plot(np.arange(args.epochs + 1), test_accuracies, "o-", color="tab:orange")
    accuracy_axis.set_ylabel("held-out token accuracy", color="tab:orange")
    loss_axis.set_title("Learning to reverse 8 tokens, by hand-written backprop")
    save(fig, args.outdir, "train_reverse_loss.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    heatmap(ax, attention_map, "Learned attention (mean over heads and held-out data)",
            "key position (input)", "query position (output)", annotate=False)
    save(fig, args.outdir, "train_reverse_attention.png")
    plt.close(fig)

    print(f"final accuracy: {test_accuracies[-1]:.4f}")


if __name__ == "__main__":
    main()
