"""The benchmark harness runs end to end at tiny sizes (no timing is asserted)."""

import json
import math

import numpy as np
import pytest

from benchmarks.run import main
from benchmarks.timing import alternate, median_ratio


def test_quick_benchmark_writes_its_json_and_plot(tmp_path, capsys):
    json_path, plot_path, table_path = tmp_path / "bench.json", tmp_path / "ratios.png", tmp_path / "table.md"
    assert main(["--quick", "--json", str(json_path), "--plot", str(plot_path), "--markdown", str(table_path)]) == 0
    report = json.loads(json_path.read_text())
    assert report["machine"]["blas"]["threads"] >= 1
    names = [case["name"] for case in report["cases"]]
    assert "attention fwd+bwd float32" in names and "causal float32" in names
    for case in report["cases"]:
        assert case["candidates"] or case["notes"], case["name"]
        for row in case["candidates"].values():
            assert row["median_seconds"] > 0 and math.isfinite(row["gflops"])
        for row in case["comparisons"]:
            assert row["median_ratio"] > 0 and row["met"] in (None, True, False)
    assert plot_path.stat().st_size > 0
    assert "| attention fwd+bwd float32" in table_path.read_text()
    assert "attention fwd+bwd float32" in capsys.readouterr().out


def test_no_torch_run_reports_numpy_only_figures(tmp_path):
    json_path = tmp_path / "bench.json"
    plot_path = tmp_path / "ratios.png"
    args = ["--quick", "--no-torch", "--cases", "float64", "--json", str(json_path), "--plot", str(plot_path)]
    assert main(args) == 0
    (case,) = json.loads(json_path.read_text())["cases"]
    assert list(case["candidates"]) == ["numpy_attention"] and case["comparisons"] == []


def test_alternate_times_every_candidate_each_round_and_ratios_are_per_round():
    calls = []
    times = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, runs=2, pause=0.0)
    assert [len(t) for t in times.values()] == [3, 3]
    assert calls.count("a") == calls.count("b") == 3 * 3  # a warm-up and two runs per block
    ratio, per_round = median_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0])
    assert per_round == [2.0, 4.0, 3.0] and ratio == 3.0


def test_the_steps_benchmark_times_every_step_and_restores_what_it_patched(capsys):
    from benchmarks import steps
    from numpy_attention.kernels import buffers, schedule

    before = (schedule.TILE_BYTES, schedule.PARALLEL_MIN_SCORES, buffers.MAX_IDLE_BYTES)
    steps.main(["--quick"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert len(lines) == len(steps.steps(steps.SIZES["quick"], np.float32)) == 8
    assert all("ratio" in line for line in lines)
    assert (schedule.TILE_BYTES, schedule.PARALLEL_MIN_SCORES, buffers.MAX_IDLE_BYTES) == before


class _Replaced(Exception):
    """What the patched os.execve raises: the arguments the process would have been replaced with."""


def _rerun(monkeypatch, kernel, flags, environment, argv=("prog", "--rounds", "2"), orig_argv=None):
    """rerun_with_detected_blas with the BLAS, the CPU flags, os.environ and sys.argv given; the execve or None."""
    from benchmarks import timing

    def execve(path, args, env):
        raise _Replaced(path, args, env)

    for name in (*timing.OPENBLAS_VARIABLES, timing.UNSET_MARKER):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(timing, "blas_info", lambda: {
        "library": "openblas 0.3.31", "kernel": kernel, "threads": 2,
        **{name: environment.get(name) for name in timing.OPENBLAS_VARIABLES}})
    monkeypatch.setattr(timing, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(timing.os, "execve", execve)
    monkeypatch.setattr(timing.sys, "argv", list(argv))
    monkeypatch.setattr(timing.sys, "orig_argv", orig_argv, raising=False)
    try:
        timing.rerun_with_detected_blas("benchmarks.gpt")
    except _Replaced as replaced:
        return replaced.args
    return None


AVX512 = {"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl"}
PINNED = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}


def test_a_coretype_without_the_cpus_avx512_reruns_the_command_without_the_openblas_variables(monkeypatch, capsys):
    path, args, env = _rerun(monkeypatch, "Haswell", AVX512, {**PINNED, "KEEP_ME": "1"})
    assert args[1:] == ["-m", "benchmarks.gpt", "--rounds", "2"]  # Python 3.9: no sys.orig_argv
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env and env["KEEP_ME"] == "1"
    assert env["BENCHMARKS_OPENBLAS_UNSET"] == "OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512"  # the record
    assert "OPENBLAS_CORETYPE=Haswell" in capsys.readouterr().out  # it says why it starts again
    # With sys.orig_argv, the command as it was started, interpreter options included.
    _, args, _ = _rerun(monkeypatch, "Haswell", AVX512, PINNED, orig_argv=["py", "-X", "dev", "-m", "benchmarks", "-q"])
    assert args[1:] == ["-X", "dev", "-m", "benchmarks", "-q"]


def test_no_rerun_when_the_kernel_is_the_cpus_best_or_was_not_forced_or_is_kept(monkeypatch):
    assert _rerun(monkeypatch, "Haswell", {"avx2"}, PINNED) is None  # no AVX-512 to miss
    assert _rerun(monkeypatch, "Haswell", {"avx2", "avx512f"}, PINNED) is None  # not all SkylakeX needs
    assert _rerun(monkeypatch, "SkylakeX", AVX512, {"OPENBLAS_CORETYPE": "SkylakeX"}) is None
    assert _rerun(monkeypatch, "Haswell", AVX512, {}) is None  # OpenBLAS's own choice: nothing to unset
    assert _rerun(monkeypatch, "Haswell", AVX512, PINNED, ("prog", "--blas-as-set")) is None
    assert _rerun(monkeypatch, "Haswell", AVX512, PINNED, ("prog", "--blas")) is None  # argparse's abbreviation
    # Started again once already (the variable came back, say from a startup hook): never a second time.
    assert _rerun(monkeypatch, "Haswell", AVX512, {**PINNED, "BENCHMARKS_OPENBLAS_UNSET": "x"}) is None


def test_each_benchmark_command_reruns_itself_by_its_own_module_name(monkeypatch):
    import runpy
    import warnings

    from benchmarks import timing

    class Stop(Exception):
        pass

    def record(module):
        raise Stop(module)

    monkeypatch.setattr(timing, "rerun_with_detected_blas", record)
    for module, expected in (("benchmarks", "benchmarks"), ("benchmarks.run", "benchmarks.run"),
                             ("benchmarks.gpt", "benchmarks.gpt")):
        with pytest.raises(Stop) as stopped, warnings.catch_warnings():
            # runpy warns that the module was imported before: only its __main__ block matters here.
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(module, run_name="__main__")
        assert stopped.value.args == (expected,)


def test_the_blas_note_names_the_variables_set_or_unset_and_an_unused_avx512(monkeypatch):
    from benchmarks import timing

    monkeypatch.setattr(timing, "cpu_flags", lambda: AVX512)
    base = {"library": "openblas 0.3.31", "OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}
    assert timing.blas_note({**base, "kernel": "SkylakeX"}) is None
    note = timing.blas_note({**base, "kernel": "Haswell", "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"})
    assert note.startswith("OPENBLAS_CORETYPE=Haswell; OPENBLAS_L2_SIZE=512; ") and "AVX-512 unused" in note
    assert timing.blas_note({**base, "library": "mkl 2024", "kernel": "Haswell"}) is None  # only OpenBLAS's kernels
    assert "without the environment's OPENBLAS_CORETYPE=Haswell" in timing.blas_note(
        {**base, "kernel": "SkylakeX", "unset": "OPENBLAS_CORETYPE=Haswell"})
