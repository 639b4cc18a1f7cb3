"""The child side of a mutation run: standard library only, imported before anything else.

The harness copies this file into a temporary directory as ``_gradcheck_mutate_child.py``,
next to a ``sitecustomize.py`` that calls :func:`install_hook`, and puts that directory
first on the child's ``PYTHONPATH``. The environment variable ``GRADCHECK_MUTATE_SPEC``
names a JSON file::

    {"module": "pkg.mod", "origin": "/abs/pkg/mod.py", "source": "/tmp/.../mutant.py",
     "imported": "/tmp/.../imported", "import_error": "/tmp/.../import_error",
     "check": {"module": "tests_helper", "qualname": "my_check"}}   # a callable check only

:func:`install_hook` puts a finder first on ``sys.meta_path`` that serves the module
named ``module`` from the mutated ``source`` (with ``__file__`` = ``origin``), so any
import of it, by any code in the child, gets the mutant; the files on disk are never
touched. It writes the ``imported`` marker when the module loads, and the traceback to
``import_error`` when executing the mutated module raises. :func:`run_check` imports
the callable check and exits 0 when it returns a true value (or an object whose
``passed`` is true), 1 otherwise or when it raises, 3 when the target fails to import.
"""

import importlib
import importlib.abc
import importlib.util
import json
import os
import sys
import traceback

SPEC_VARIABLE = "GRADCHECK_MUTATE_SPEC"


def _spec():
    path = os.environ.get(SPEC_VARIABLE)
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, spec):
        self.spec = spec

    def create_module(self, module_spec):
        return None

    def exec_module(self, module):
        with open(self.spec["imported"], "w", encoding="utf-8"):
            pass
        with open(self.spec["source"], encoding="utf-8") as f:
            source = f.read()
        try:
            exec(compile(source, self.spec["origin"], "exec"), module.__dict__)
        except BaseException:
            with open(self.spec["import_error"], "w", encoding="utf-8") as f:
                f.write(traceback.format_exc())
            raise


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, spec):
        self.spec = spec

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.spec["module"]:
            return None
        origin = self.spec["origin"]
        package = [os.path.dirname(origin)] if os.path.basename(origin) == "__init__.py" else None
        return importlib.util.spec_from_file_location(fullname, origin, loader=_MutantLoader(self.spec),
                                                      submodule_search_locations=package)


def install_hook():
    """Serve the mutated module to every import in this process (no-op without a spec)."""
    spec = _spec()
    if spec is not None and not any(isinstance(f, _MutantFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MutantFinder(spec))


def chain_sitecustomize(own_dir):
    """Run the ``sitecustomize`` this directory's copy shadows, if the interpreter has one."""
    shadowed = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.abspath(own_dir)]
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        if shadowed is not None:
            sys.modules["sitecustomize"] = shadowed
    finally:
        sys.path[:] = saved


def run_check():
    """Exit 0 if the callable check passes on the mutant, 1 if it fails or raises, 3 if the target does not import."""
    spec = _spec()
    try:
        importlib.import_module(spec["module"])
    except BaseException:
        traceback.print_exc()
        sys.exit(3)
    try:
        obj = importlib.import_module(spec["check"]["module"])
        for part in spec["check"]["qualname"].split("."):
            obj = getattr(obj, part)
        result = obj()
        passed = bool(getattr(result, "passed", result))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    if not passed:
        print(f"check returned {result!r}" if len(repr(result)) < 2000 else str(result))
    sys.exit(0 if passed else 1)
