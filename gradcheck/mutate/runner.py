"""Run a check on every mutant, each in a fresh subprocess that imports the mutated module.

The child gets the mutant through an import hook (see :mod:`gradcheck.mutate._child`):
nothing in the working tree is written, and an interrupted run leaves the files as they
were. A check is a shell command (argv list or string, run without a shell; a leading
``python`` means this interpreter) that exits 0 when it passes, or a module-level
callable that returns a true value (or a report whose ``passed`` is true).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .operators import Mutant

Check = Union[str, Sequence[str], Callable[[], Any]]

CHILD_MODULE = "_gradcheck_mutate_child"
SITECUSTOMIZE = f"""import os as _os
import {CHILD_MODULE} as _child
_child.install_hook()
_child.chain_sitecustomize(_os.path.dirname(__file__))
"""
OUTPUT_TAIL = 4000  # characters of a child's output kept for the report


class MutationError(RuntimeError):
    """The run cannot measure anything: a bad target or check, or a check that fails on the original."""


@dataclass(frozen=True)
class Target:
    """The module to mutate: its import name in the child, its file, and extra ``sys.path`` entries."""

    module: str
    file: Path
    functions: tuple[str, ...] | None = None
    extra_path: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return self.file.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Outcome:
    status: str  # "killed", "survived", "timeout", "error"
    seconds: float
    returncode: int | None
    output: str = ""
    imported: bool = True


def _file_target(path: Path, functions: tuple[str, ...] | None) -> Target:
    """A file: its dotted name counts the package directories above it (``__init__.py``)."""
    path = path.resolve()
    parts, root = [path.stem] if path.name != "__init__.py" else [], path.parent
    while (root / "__init__.py").exists():
        parts.insert(0, root.name)
        root = root.parent
    return Target(".".join(parts), path, functions, (str(root),))


def resolve_target(target: Any, functions: Sequence[str] | None = None) -> Target:
    """A module name, a module, a ``.py`` path, a function, or a list of functions of one module."""
    names = tuple(functions) if functions is not None else None
    if isinstance(target, (list, tuple)) and target and all(callable(f) for f in target):
        modules = {f.__module__ for f in target}
        if len(modules) != 1:
            raise MutationError(f"target: the functions come from several modules {sorted(modules)}; pass one module's")
        return resolve_target(inspect.getmodule(target[0]), [f.__qualname__ for f in target])
    if isinstance(target, (types.FunctionType, types.MethodType)):
        return resolve_target(inspect.getmodule(target), [target.__qualname__])
    if isinstance(target, types.ModuleType):
        file = getattr(target, "__file__", None)
        if not file or not file.endswith(".py"):
            raise MutationError(f"target: module {target.__name__} has no Python source file")
        if target.__name__ == "__main__":
            return _file_target(Path(file), names)
        return Target(target.__name__, Path(file).resolve(), names)
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if text.endswith(".py") or os.sep in text or (os.altsep and os.altsep in text):
            if not Path(text).is_file():
                raise MutationError(f"target: no file {text}")
            return _file_target(Path(text), names)
        try:
            spec = importlib.util.find_spec(text)
        except (ImportError, ValueError) as err:
            raise MutationError(f"target: cannot find module {text!r}: {err}") from err
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            raise MutationError(f"target: no Python module named {text!r} (expected a dotted name or a .py file)")
        return Target(text, Path(spec.origin).resolve(), names)
    raise MutationError(f"target: expected a module, module name, .py path or function; got {type(target).__name__}")


def _callable_check(check: Callable[[], Any], target: Target) -> dict[str, str]:
    qualname = getattr(check, "__qualname__", "")
    module = getattr(check, "__module__", None)
    if not module or "<" in qualname:
        raise MutationError(f"check: {qualname or check!r} is not a module-level function; the check runs in a "
                            "fresh process, so it must be importable (or pass a shell command)")
    if module == "__main__":
        file = Path(sys.modules["__main__"].__file__).resolve()
        if file != target.file:
            raise MutationError("check: a check defined in the __main__ script must live in the target's file")
        module = target.module
    return {"module": module, "qualname": qualname}


def command_argv(check: str | Sequence[str]) -> list[str]:
    argv = shlex.split(check) if isinstance(check, str) else list(check)
    if not argv:
        raise MutationError("check: the command is empty")
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def describe_check(check: Check) -> str:
    if callable(check):
        return f"{check.__module__}.{check.__qualname__}()"
    return shlex.join(command_argv(check))


@dataclass
class Runner:
    """Runs one check on the original and on mutants; owns a temporary directory until ``close``."""

    target: Target
    check: Check
    cwd: Path = field(default_factory=Path.cwd)
    tmp: Path = field(init=False)

    def __post_init__(self) -> None:
        self.callable = _callable_check(self.check, self.target) if callable(self.check) else None
        self.argv = None if self.callable else command_argv(self.check)
        self.tmp = Path(tempfile.mkdtemp(prefix="gradcheck-mutate-"))
        hook = self.tmp / "hook"
        hook.mkdir()
        shutil.copyfile(Path(__file__).with_name("_child.py"), hook / f"{CHILD_MODULE}.py")
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        paths = [str(hook), *self.target.extra_path]
        if self.callable:  # the child must import what this process can
            paths += [os.path.abspath(p or ".") for p in sys.path]
        elif os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONDONTWRITEBYTECODE": "1"}
        self.active: set[subprocess.Popen] = set()
        self.stopping = False

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, key: str, source: str, timeout: float | None) -> Outcome:
        """Run the check with ``source`` in place of the target module."""
        work = self.tmp / key
        work.mkdir()
        spec = {"module": self.target.module, "origin": str(self.target.file), "source": str(work / "source.py"),
                "imported": str(work / "imported"), "import_error": str(work / "import_error")}
        if self.callable:
            spec["check"] = self.callable
        (work / "source.py").write_text(source, encoding="utf-8")
        (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        env = {**self.env, "GRADCHECK_MUTATE_SPEC": str(work / "spec.json")}
        argv = self.argv or [sys.executable, "-c", f"import {CHILD_MODULE} as c; c.run_check()"]
        if self.stopping:
            raise MutationError("the run was interrupted")
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=os.name == "posix")
        self.active.add(process)
        try:
            output, _ = process.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill(process)
            output, _ = process.communicate()
            timed_out = True
        except BaseException:  # Ctrl-C: the child runs in its own session and would not see it
            _kill(process)
            raise
        finally:
            self.active.discard(process)
        seconds = time.perf_counter() - start
        text = output.decode(errors="replace")[-OUTPUT_TAIL:]
        imported = (work / "imported").exists()
        if (work / "import_error").exists():
            text = (work / "import_error").read_text(encoding="utf-8")[-OUTPUT_TAIL:]
            status = "error"
        elif timed_out:
            status = "timeout"
        else:
            status = "survived" if process.returncode == 0 else "killed"
        shutil.rmtree(work, ignore_errors=True)
        return Outcome(status, seconds, None if timed_out else process.returncode, text, imported)

    def baseline(self) -> Outcome:
        """The check on the unmutated module: it must pass, and it must import the module."""
        outcome = self.run("baseline", self.target.source, None)
        what = f"the check {describe_check(self.check)}"
        if outcome.status != "survived":
            raise MutationError(f"{what} fails on the original {self.target.module} (exit {outcome.returncode}); "
                                f"fix it first. Its output:\n{outcome.output}")
        if not outcome.imported:
            raise MutationError(f"{what} never imports {self.target.module}, so no mutant could be caught")
        return outcome

    def run_all(self, mutants: Sequence[Mutant], timeout: float, jobs: int,
                progress: Callable[[Mutant, Outcome], None] | None = None) -> list[Outcome]:
        def one(mutant: Mutant) -> Outcome:
            outcome = self.run(mutant.id, mutant.source, timeout)
            if progress is not None:
                progress(mutant, outcome)
            return outcome
        try:
            if jobs <= 1:
                return [one(m) for m in mutants]
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                return list(pool.map(one, mutants))
        except BaseException:
            self.stopping = True
            for process in list(self.active):
                _kill(process)
            raise


def _kill(process: subprocess.Popen) -> None:
    """Kill the child and everything it started (its own session), by its process group id."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except ProcessLookupError:
        pass
