"""Names of the caller's own code a formula may use: the Python API's one switch.

A formula read from a file, a job, saved results or statistics, or the command line may
call only what the whitelist of :mod:`dmixed.design.formula` allows (formulaic's
transforms, elementwise numpy functions, ``abs``).  In the Python API
(:meth:`dmixed.MixedLM.from_formula`, :func:`dmixed.mixedlm`) a formula may also use
functions of the caller's own scope, as statsmodels allows (its ``eval_env``): that is
the user's code in the user's process (DESIGN.md §12); a formula that is not the
user's own (read from a request or a file) is given with ``eval_env=-1``, which looks
nothing up.  This module owns that switch:
the API captures an :class:`Environment` (:func:`capture`) and passes it to
:func:`dmixed.design.build_spec`; every other entry passes none, and then nothing of
any scope is looked up.

Only the names a formula uses and the whitelist does not know (not a column, not a
transform) are looked up, once, when the spec is built: they become the spec's
:class:`CallerNames`, given to formulaic as its evaluation context on every partition
and on new rows to predict.  The rest of the whitelist still holds for such formulas
(no lambdas, subscripts, private attributes, transforms that learn from the data).
A name must be a function (any callable), a module, or a real number or text; data (arrays,
Series) is read from the data's columns only, since it could not follow the rows of a
partition or of new data.  The functions are called on each partition and on new rows
separately, so they must work row by row (as ``np.log``), not learn from the rows they
are given.

:class:`CallerNames` pickle by value (cloudpickle), so the spec carries them to Dask
workers; names that cannot be pickled are refused when a spec of Dask data is built.
Saved results mark the names (:meth:`ModelSpec.to_dict`); loading such results needs
them passed explicitly (:func:`saved_environment`): code is never read from a file.
"""

from __future__ import annotations

import builtins
import numbers
import pickle
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import CheckpointError, FormulaError, SpecError

__all__ = [
    "CallerNames",
    "Environment",
    "capture",
    "caller_names_shippable",
    "saved_environment",
]


class Environment:
    """Namespaces where names of a formula that the whitelist does not know are looked
    up, in turn (a frame's locals, its globals, the builtins; or a mapping given)."""

    def __init__(self, namespaces: Iterable[Mapping[str, Any]]) -> None:
        self.namespaces = tuple(namespaces)

    def __contains__(self, name: object) -> bool:
        return any(name in ns for ns in self.namespaces)

    def lookup(self, name: str) -> Any:
        for ns in self.namespaces:
            if name in ns:
                return ns[name]
        raise KeyError(name)

    def resolve(self, names: Iterable[str], where: str) -> CallerNames:
        """The values of ``names`` (each checked: a function, a module, a real number or text).

        Raises
        ------
        FormulaError
            A name that is data (an array, a Series, ...) rather than a function.
        """
        out = {}
        for name in dict.fromkeys(names):
            value = self.lookup(name)
            if not _allowed_value(value):
                raise FormulaError(
                    f"{where}: the data has no column {name!r}, and {name!r} of the "
                    f"caller's scope is a {type(value).__name__}, "
                    "not a function: a formula reads data only from the data's columns "
                    "(a value from elsewhere could not follow the rows of each partition or "
                    "of new data); add it to the data as a column"
                )
            out[name] = value
        return CallerNames(out)


def _allowed_value(value: Any) -> bool:
    return isinstance(value, (types.ModuleType, str, numbers.Real)) or callable(value)


def capture(eval_env, frame: types.FrameType | None) -> Environment | None:
    """The environment of a formula given to the Python API (statsmodels' ``eval_env``).

    ``eval_env``: None or 0, the scope of the frame that called the API (``frame``);
    ``k > 0``, the scope ``k`` frames further out; ``-1``, none (the whitelist only);
    a mapping of names, exactly those names.

    Raises
    ------
    SpecError
        An ``eval_env`` of another kind, or deeper than the stack.
    """
    if isinstance(eval_env, Mapping):
        return Environment([eval_env])
    depth = 0 if eval_env is None else eval_env
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < -1:
        raise SpecError(
            "eval_env must be None (the caller's scope), a depth >= 0, -1 (no scope) or "
            f"a mapping of names, got {eval_env!r}"
        )
    if depth == -1:
        return None
    for _ in range(depth):
        frame = None if frame is None else frame.f_back
    if frame is None:
        raise SpecError(f"eval_env={eval_env!r} is deeper than the calling stack")
    return Environment([frame.f_locals, frame.f_globals, vars(builtins)])


class CallerNames(Mapping):
    """The names of the caller's code a spec's formulas use, with their values
    (formulaic's evaluation context).  Pickled by value (cloudpickle), so that Dask
    workers get the functions themselves."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values_by_name = dict(values)

    def __getitem__(self, name: str) -> Any:
        return self.values_by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values_by_name)

    def __len__(self) -> int:
        return len(self.values_by_name)

    def __repr__(self) -> str:
        return f"CallerNames({sorted(self.values_by_name)})"

    def dumps(self) -> bytes:
        """The names and their values, pickled by value.

        Raises
        ------
        SpecError
            A value cloudpickle cannot pickle (it could not reach another process).
        """
        import cloudpickle  # a dependency of Dask: imported only when a spec is pickled

        try:
            return cloudpickle.dumps(self.values_by_name)
        except Exception as e:
            raise SpecError(
                f"the formula uses {sorted(self.values_by_name)} of the caller's scope, and "
                f"they cannot be pickled to reach other processes (Dask workers): {e}; "
                "use functions defined at module level, or add the values as columns"
            ) from None

    def __reduce__(self):
        return (_caller_names_of, (self.dumps(),))


def _caller_names_of(blob: bytes) -> CallerNames:
    return CallerNames(pickle.loads(blob))


def caller_names_shippable(names: CallerNames | None) -> None:
    """Refuse (SpecError) names that cannot be pickled: a spec of Dask data is shipped
    to the workers, which may be other processes."""
    if names:
        names.dumps()


def saved_environment(saved: list[str] | None, eval_env) -> Environment | None:
    """The environment of a spec read from a file: none, unless the saved spec marks
    names of the code that fitted it, which ``eval_env`` (a mapping, given by the
    user) must then supply; only those names are taken from it.

    Raises
    ------
    CheckpointError
        Marked names and no ``eval_env``, or an ``eval_env`` missing some of them.
    """
    if not saved:
        return None
    shown = ", ".join(f"{n}()" if n.isidentifier() else repr(n) for n in saved)
    if not isinstance(eval_env, Mapping):
        raise CheckpointError(
            f"the saved model's formula uses {shown} of the code that fitted it; code is "
            "never read from a file: pass them, e.g. dmixed.load(path, eval_env="
            f"{{{saved[0]!r}: {saved[0]}}})"
        )
    missing = [n for n in saved if n not in eval_env]
    if missing:
        raise CheckpointError(
            f"the saved model's formula uses {shown}; eval_env lacks {sorted(missing)}"
        )
    return Environment([{n: eval_env[n] for n in saved}])
