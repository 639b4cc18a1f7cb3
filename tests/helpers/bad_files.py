"""Broken weight files of every kind, for the robustness tests of ``Module.load``."""

from __future__ import annotations

import zipfile

import numpy as np

import numpy_attention as na


def zeros(*shape, dtype=np.float64):
    return np.zeros(shape, dtype)


def linear_module(dtype=np.float64):
    return na.Linear(4, 3, dtype=dtype, rng=np.random.default_rng(0))


def mha(**options):
    return na.MultiHeadAttention(4, 2, **options, rng=0)


def _flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def write_bad_files(folder) -> dict:
    """Each kind of broken weight file, for Linear(4, 3)."""
    good = folder / "good.npz"
    linear_module().save(good)
    data = good.read_bytes()
    weight_data = zipfile.ZipFile(good).getinfo("weight.npy").header_offset + 30 + len("weight.npy") + 130
    files = {name: folder / f"{name}.npz" for name in
             ("truncated", "garbage", "pickled", "other_shapes", "other_keys", "complex", "bad_crc", "bad_deflate")}
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["garbage"].write_bytes(b"PK\x03\x04" + bytes(range(256)))
    np.savez(files["pickled"], weight=np.array([{"a": 1}] * 12, dtype=object).reshape(3, 4), bias=zeros(3))
    np.savez(files["other_shapes"], weight=zeros(3, 5), bias=zeros(3))
    np.savez(files["other_keys"], weight=zeros(3, 4), b=zeros(3))
    np.savez(files["complex"], weight=zeros(3, 4).astype(complex), bias=zeros(3))
    files["bad_crc"].write_bytes(_flip_byte(data, weight_data))
    np.savez_compressed(files["bad_deflate"], weight=np.arange(12.0).reshape(3, 4), bias=zeros(3))
    compressed = files["bad_deflate"].read_bytes()
    files["bad_deflate"].write_bytes(_flip_byte(compressed, 30 + len("weight.npy") + 20))
    files["single"] = folder / "single.npy"
    np.save(files["single"], zeros(3, 4))
    files["mha_one_kv_head"] = folder / "mha_one_kv_head.npz"
    mha(num_kv_heads=1).save(files["mha_one_kv_head"])
    files["huge_shape"] = folder / "huge_shape.npz"  # a header promising petabytes: MemoryError inside NumPy
    with zipfile.ZipFile(good) as archive:
        # The longer shape eats into the header's space padding: the header still parses.
        weight = archive.read("weight.npy").replace(b"'shape': (3, 4), ", b"'shape': (" + b"9" * 15 + b",),")
        with zipfile.ZipFile(files["huge_shape"], "w") as broken:
            broken.writestr("weight.npy", weight)
            broken.writestr("bias.npy", archive.read("bias.npy"))
    return files
