"""Weight files: exact round trips, no pickle, and broken files that leave the module untouched."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from helpers.bad_files import write_bad_files

import numpy_attention as na

MODULES = {  # (class, keyword arguments): one module of each kind, in both dtypes, with and without biases
    "Linear-f64": (na.Linear, {"in_features": 5, "out_features": 3}),
    "Linear-f32": (na.Linear, {"in_features": 5, "out_features": 3, "dtype": np.float32}),
    "Linear-no-bias": (na.Linear, {"in_features": 4, "out_features": 2, "bias": False}),
    "MHA": (na.MultiHeadAttention, {"embed_dim": 6, "num_heads": 3}),
    "MHA-f32-gqa-bias-kv": (na.MultiHeadAttention, {"embed_dim": 8, "num_heads": 4, "num_kv_heads": 2,
                                                    "add_bias_kv": True, "kdim": 3, "dtype": np.float32}),
    "MHA-no-bias": (na.MultiHeadAttention, {"embed_dim": 4, "num_heads": 1, "bias": False, "vdim": 2}),
}


def assert_params_equal(module, expected: dict, message: str = "") -> None:
    for key, value in expected.items():
        np.testing.assert_array_equal(module.params[key], value, err_msg=f"{key} {message}")


def build(name: str, seed: int):
    cls, kwargs = MODULES[name]
    return cls(**kwargs, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_save_load_round_trips_exactly(name, tmp_path):
    module, fresh = build(name, 0), build(name, 99)
    for value in module.params.values():  # non-zero biases too, so every entry is tested
        value[...] += np.random.default_rng(1).standard_normal(value.shape).astype(value.dtype)
    path = tmp_path / "weights"  # no suffix: save writes exactly this path, as torch.save does
    module.save(path)
    assert path.exists() and not (tmp_path / "weights.npz").exists()
    buffers = dict(fresh.params)
    fresh.load(path)
    assert all(fresh.params[key] is buffers[key] for key in buffers)  # loaded in place, no rebinding
    assert_params_equal(fresh, module.params)
    assert all(fresh.params[key].dtype == value.dtype for key, value in module.params.items())
    with np.load(path, allow_pickle=False) as archive:  # a plain .npz any NumPy can read
        assert sorted(archive.files) == sorted(module.params)


def test_save_load_through_file_objects():
    module, fresh = na.Linear(3, 2, rng=np.random.default_rng(1)), na.Linear(3, 2, rng=np.random.default_rng(2))
    buffer = io.BytesIO()
    module.save(buffer)
    buffer.seek(0)
    fresh.load(buffer)
    np.testing.assert_array_equal(fresh.params["weight"], module.params["weight"])


def test_float32_file_loads_into_float64_module_exactly(tmp_path):
    small = na.Linear(4, 3, dtype=np.float32, rng=np.random.default_rng(3))
    small.save(tmp_path / "f32.npz")
    wide = na.Linear(4, 3, rng=np.random.default_rng(4))
    wide.load(tmp_path / "f32.npz")
    assert wide.params["weight"].dtype == np.float64
    np.testing.assert_array_equal(wide.params["weight"], small.params["weight"].astype(np.float64))


class Trap:
    """Unpickling this sets a flag: proof that a file was (or was not) unpickled."""

    sprung = False

    def __reduce__(self):
        return (Trap._spring, ())

    @staticmethod
    def _spring():
        Trap.sprung = True
        return 0.0


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "trap.npz"
    np.savez(path, weight=np.array([Trap()] * 12, dtype=object).reshape(3, 4), bias=np.zeros(3))
    with np.load(path, allow_pickle=True) as archive:  # the trap works when pickle is allowed ...
        archive["weight"]
    assert Trap.sprung
    Trap.sprung = False
    with pytest.raises(ValueError, match="trap.npz.*pickle"):
        na.Linear(4, 3).load(path)
    assert not Trap.sprung  # ... and load did not allow it


def saved_and_target(tmp_path):
    """(a Linear, the bytes of its saved file, another Linear to load into, that one's state)."""
    module = na.Linear(4, 3, rng=np.random.default_rng(0))
    module.save(tmp_path / "good.npz")
    target = na.Linear(4, 3, rng=np.random.default_rng(5))
    return module, (tmp_path / "good.npz").read_bytes(), target, target.state_dict()


def test_every_truncation_is_a_value_error_and_leaves_params_unchanged(tmp_path):
    _, data, target, before = saved_and_target(tmp_path)
    for length in range(0, len(data), 7):
        path = tmp_path / f"cut{length}.npz"
        path.write_bytes(data[:length])
        with pytest.raises(ValueError, match=f"cut{length}.npz"):
            target.load(path)
        assert_params_equal(target, before)


def test_every_flipped_byte_is_caught_or_harmless(tmp_path):
    """A flipped byte anywhere gives a ValueError, or loads the very same values (a byte zip ignores)."""
    module, data, target, before = saved_and_target(tmp_path)
    rejected = 0
    for offset in range(len(data)):
        path = tmp_path / "flipped.npz"
        path.write_bytes(data[:offset] + bytes([data[offset] ^ 0x5A]) + data[offset + 1:])
        try:
            target.load(path)
        except ValueError:
            rejected += 1
            assert_params_equal(target, before)
        else:
            assert_params_equal(target, module.params, f"changed by flipping byte {offset}")
            target.load_state_dict(before)
    assert rejected > len(data) // 2


@pytest.mark.parametrize("kind", ["truncated", "garbage", "pickled", "other_shapes", "other_keys", "complex",
                                  "single", "bad_crc", "bad_deflate", "huge_shape"])
def test_bad_file_leaves_parameters_unchanged(kind, tmp_path):
    path = write_bad_files(tmp_path)[kind]
    module = na.Linear(4, 3, rng=np.random.default_rng(7))
    before = module.state_dict()
    with pytest.raises(ValueError, match=path.name):
        module.load(path)
    assert_params_equal(module, before)


def test_partly_bad_state_dict_writes_nothing():
    module = na.Linear(4, 3, rng=np.random.default_rng(0))
    before = module.state_dict()
    good_weight = np.ones((3, 4))
    for bad_bias in (np.full(3, np.nan), np.zeros(4), np.ones(3, dtype=complex)):
        with pytest.raises((ValueError, TypeError), match="bias"):
            module.load_state_dict({"weight": good_weight, "bias": bad_bias})
        np.testing.assert_array_equal(module.params["weight"], before["weight"])


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        na.Linear(2, 2).load(tmp_path / "nowhere.npz")


def test_a_file_with_an_extra_member_is_rejected(tmp_path):
    path = tmp_path / "extra.npz"
    na.Linear(4, 3).save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "not an array")
    with pytest.raises(ValueError, match=r"extra.npz.*unexpected \['notes.txt'\]"):
        na.Linear(4, 3).load(path)


@pytest.mark.parametrize("other", ["MHA-f32-gqa-bias-kv", "MHA-no-bias", "Linear-f64"])
def test_a_file_from_another_module_is_rejected_and_changes_nothing(other, tmp_path):
    path = tmp_path / f"{other}.npz"
    build(other, 0).save(path)
    module = na.MultiHeadAttention(8, 4, rng=np.random.default_rng(3))
    before = module.state_dict()
    with pytest.raises(ValueError, match=rf"{other}.npz.*(missing|unexpected|shape)"):
        module.load(path)
    assert_params_equal(module, before)
