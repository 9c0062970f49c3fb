"""Check an architecture's config before any network is built.

A model folder's ``config.json`` (or a card, or a file's metadata) is untrusted: a width of 1e9, a
negative width or 40 levels would otherwise give a traceback or a huge allocation. :func:`validate_config`
checks, in order: that the config is a JSON object; that it names only settings of the architecture's
:attr:`~deblurkit.archs.Architecture.config_schema` (with a did-you-mean); each setting's type and range;
the architecture's cross-setting rules (:attr:`~deblurkit.archs.Architecture.check_config`); and the
number of parameters and buffers, counted on a network built on the ``meta`` device (shapes, no memory)
against :data:`MAX_PARAMETERS`; the build stops as soon as it passes that or :data:`MAX_MODULES`, so
even a hostile config within the per-setting ranges is refused in seconds. Every refusal is a
:class:`~deblurkit.errors.UsageError` of one line naming the setting.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch.nn.modules import module as module_hooks

from ..archs import ARCHITECTURES, Architecture, ConfigField, get_architecture
from ..errors import UsageError, describe

__all__ = ["MAX_MODULES", "MAX_PARAMETERS", "Size", "count_parameters", "validate_config"]

MAX_PARAMETERS = 2_000_000_000
"""The most parameters (and buffer elements) a config may ask for; the official models have ≤ 70 M."""
MAX_MODULES = 10_000
"""The most modules a config may ask for (the official MAXIM-3S has 2,227): bounds the meta build's time."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(spec: ConfigField, value: int | float) -> bool:
    return spec.low <= value <= spec.high  # False for NaN


def _int_ok(spec: ConfigField, value: Any) -> bool:
    return _is_int(value) and _in_range(spec, value)


def _float_ok(spec: ConfigField, value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and _in_range(spec, value)


def _ints_ok(spec: ConfigField, value: Any) -> bool:
    fewest, most = spec.length
    return (
        isinstance(value, list | tuple)
        and fewest <= len(value) <= most
        and all(_int_ok(spec, entry) for entry in value)
    )


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _range(spec: ConfigField) -> str:
    finite_low, finite_high = math.isfinite(spec.low), math.isfinite(spec.high)
    if finite_low and finite_high:
        return f" between {_number(spec.low)} and {_number(spec.high)}"
    if finite_low or finite_high:
        return f" of at least {_number(spec.low)}" if finite_low else f" of at most {_number(spec.high)}"
    return ""


def _count(spec: ConfigField) -> str:
    fewest, most = spec.length
    return str(fewest) if fewest == most else f"{fewest} to {most}"


class _Kind(NamedTuple):
    """How a :attr:`ConfigField.kind` accepts a value and how its rule reads in a message."""

    accepts: Callable[[ConfigField, Any], bool]
    describe: Callable[[ConfigField], str]


_KINDS: dict[str, _Kind] = {
    "int": _Kind(_int_ok, lambda spec: f"an integer{_range(spec)}"),
    "float": _Kind(_float_ok, lambda spec: f"a number{_range(spec)}"),
    "bool": _Kind(lambda spec, value: isinstance(value, bool), lambda spec: "true or false"),
    "str": _Kind(
        lambda spec, value: isinstance(value, str) and (not spec.choices or value in spec.choices),
        lambda spec: "one of " + ", ".join(f'"{c}"' for c in spec.choices) if spec.choices else "a string",
    ),
    "ints": _Kind(_ints_ok, lambda spec: f"a list of {_count(spec)} integers{_range(spec)}"),
    "int|ints": _Kind(
        lambda spec, value: _int_ok(spec, value) or _ints_ok(spec, value),
        lambda spec: f"an integer{_range(spec)} or a list of {_count(spec)} of them",
    ),
}


def _shown(value: Any, limit: int = 60) -> str:
    """A value as JSON writes it, cut to one short line."""
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"a list of {len(value)} entries"
    try:
        text = json.dumps(value, default=repr, allow_nan=True)
    except ValueError:  # a circular structure
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _check_names(arch: Architecture, config: Mapping[Any, Any]) -> str | None:
    """The first setting the architecture does not have, with the closest one it has."""
    known = list(arch.config_schema)
    for key in config:
        if not isinstance(key, str):
            return f"setting names must be strings, got {_shown(key)}"
        if key not in arch.config_schema:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (it has: {', '.join(known)})"
            return f"unknown setting {_shown(key)} for architecture {arch.name!r}{hint}"
    return None


def _check_values(arch: Architecture, config: Mapping[str, Any]) -> str | None:
    """The first setting whose value has the wrong type or is out of range."""
    for key, value in config.items():
        spec = arch.config_schema[key]
        kind = _KINDS[spec.kind]
        if spec.nullable and value is None:
            continue
        if not kind.accepts(spec, value):
            rule = ("null or " if spec.nullable else "") + kind.describe(spec)
            return f'"{key}" must be {rule}, got {_shown(value)}'
    return None


class _Budget:
    """What one thread's meta build has registered so far; stops the build once over a limit."""

    def __init__(self, max_elements: float, max_modules: float) -> None:
        self.elements, self.modules = 0, 0
        self.max_elements, self.max_modules = max_elements, max_modules

    def add(self, elements: int = 0, modules: int = 0) -> None:
        self.elements += elements
        self.modules += modules
        if self.elements > self.max_elements or self.modules > self.max_modules:
            raise _OverBudgetError


class _OverBudgetError(Exception):
    """Raised inside a meta build that has gone over its budget, to stop it early."""


_building = threading.local()


def _on_tensor(module: torch.nn.Module, name: str, tensor: torch.Tensor | None) -> None:
    budget: _Budget | None = getattr(_building, "budget", None)
    if budget is not None and tensor is not None:
        budget.add(elements=tensor.numel())


def _on_module(module: torch.nn.Module, name: str, child: torch.nn.Module | None) -> None:
    budget: _Budget | None = getattr(_building, "budget", None)
    if budget is not None and child is not None:
        budget.add(modules=1)


class Size(NamedTuple):
    """Parameters plus buffer elements, and modules, of a network; ``complete`` is false when counting
    stopped early (the network is at least this large)."""

    elements: int
    modules: int
    complete: bool


def count_parameters(
    arch: Architecture,
    config: Mapping[str, Any],
    *,
    max_elements: float = math.inf,
    max_modules: float = math.inf,
) -> Size:
    """Count ``arch`` built from ``config`` on the meta device (no memory), stopping the build as soon as
    it registers more than ``max_elements`` parameter and buffer elements or ``max_modules`` modules."""
    budget = _Budget(max_elements, max_modules)
    hooks = [
        module_hooks.register_module_parameter_registration_hook(_on_tensor),
        module_hooks.register_module_buffer_registration_hook(_on_tensor),
        module_hooks.register_module_module_registration_hook(_on_module),
    ]
    _building.budget = budget
    try:
        with torch.device("meta"):
            network = arch.build(**config)
    except _OverBudgetError:
        return Size(budget.elements, budget.modules, complete=False)
    finally:
        _building.budget = None
        for hook in hooks:
            hook.remove()
    elements = sum(t.numel() for t in network.parameters()) + sum(t.numel() for t in network.buffers())
    return Size(elements, sum(1 for _ in network.modules()), complete=True)


@functools.lru_cache(maxsize=64)
def _cached_count(architecture: str, config_json: str, max_elements: float, max_modules: float) -> Size:
    arch = get_architecture(architecture)
    return count_parameters(arch, json.loads(config_json), max_elements=max_elements, max_modules=max_modules)


def _count_once(
    arch: Architecture, config: Mapping[str, Any], max_elements: float, max_modules: float
) -> Size:
    """:func:`count_parameters`, remembered per registered architecture, JSON config and limits."""
    try:
        key = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError):  # not JSON (a config built in Python): count it afresh
        key = None
    if key is None or ARCHITECTURES.get(arch.name) is not arch:
        return count_parameters(arch, config, max_elements=max_elements, max_modules=max_modules)
    return _cached_count(arch.name, key, max_elements, max_modules)


def validate_config(
    architecture: str,
    config: Any,
    *,
    source: str = "config.json",
    max_parameters: int = MAX_PARAMETERS,
    max_modules: int = MAX_MODULES,
) -> dict[str, Any]:
    """Check ``config`` for ``architecture`` without allocating; returns it merged over the schema's defaults.

    The result builds the same network as ``config`` itself (the defaults are the constructor's).
    Raises :class:`UsageError` (``"<source>: <what is wrong>"``, one line) for a config that is not an
    object, an unknown setting, a value of the wrong type or out of range, settings that do not fit
    together, or a network of more than ``max_parameters`` parameters (and buffer elements) or
    ``max_modules`` modules. Raises ``KeyError`` for an unknown architecture (as
    :func:`~deblurkit.archs.get_architecture`).
    """
    arch = get_architecture(architecture)
    if not isinstance(config, Mapping):
        raise UsageError(f'{source}: "config" must be a JSON object of settings, got {_type_name(config)}')
    if arch.config_schema:
        problem = _check_names(arch, config) or _check_values(arch, config)
        if problem:
            raise UsageError(f"{source}: {problem}")
    merged = {**{key: spec.default for key, spec in arch.config_schema.items()}, **config}
    problem = arch.check_config(merged) if arch.check_config else None
    if problem:
        raise UsageError(f"{source}: {problem}")
    try:
        size = _count_once(arch, merged, max_parameters, max_modules)
    except Exception as err:  # whatever the constructor raises: this config cannot be built
        raise UsageError(f"{source}: bad config for architecture {arch.name!r}: {describe(err)}") from None
    at_least = "" if size.complete else "at least "
    if size.elements > max_parameters:
        raise UsageError(
            f"{source}: this config makes a network of {at_least}{size.elements:,} parameters, "
            f"more than the {max_parameters:,} allowed"
        )
    if size.modules > max_modules:
        raise UsageError(
            f"{source}: this config makes a network of {at_least}{size.modules:,} layers, "
            f"more than the {max_modules:,} allowed"
        )
    return merged
