"""Verification of hand-written backward passes: finite differences, and PyTorch when installed."""

from .numeric import numerical_gradients

__all__ = ["numerical_gradients"]
