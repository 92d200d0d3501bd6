"""The adapter registry: adapters by name, and the model names (``fnmatch`` patterns) they serve.

An adapter is a function ``load(request: LoadRequest) -> PredictiveModel`` (the API is in
:mod:`deepmr_kipoi.adapters`). It decides how to load the model, its input layout and alphabet, how
raw outputs become named scalar features, the output transform and the uncertainty method.
:func:`deepmr_kipoi.kipoi_models.load_model` asks :func:`find_adapter` for the adapter of a model
name; models no adapter serves get :data:`FALLBACK_ADAPTER`.

The package's own adapters (:data:`BUILTIN_ADAPTER_MODULES`) are imported on the first lookup, by
module name, so they are there even where the package's entry points are not installed (a source
checkout on ``PYTHONPATH``).

Two ways to register:

* in a user's session, the decorator::

      from deepmr_kipoi import registry

      @registry.register_adapter("MyCNN", description="my CNN, 12 ChIP features, MC dropout")
      def load(request):
          ...
          return MCDropout(from_torch(net, feature_names=names, layout="NCL"), n_samples=30)

* in an installed package, an entry point in the ``deepmr_kipoi.adapters`` group naming a module
  whose import registers adapters with the decorator (or a decorated function)::

      [options.entry_points]
      deepmr_kipoi.adapters =
          mycnn = mypackage.deepmr_adapter

Entry points are loaded lazily, on the first lookup; a plugin that fails to import is reported
(:func:`plugin_errors`, :func:`describe_adapters`, a log warning) and skipped, never fatal.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_ADAPTER_MODULES",
    "ENTRY_POINT_GROUP",
    "FALLBACK_ADAPTER",
    "AdapterInfo",
    "Registry",
    "describe_adapters",
    "find_adapter",
    "get_adapter",
    "get_adapter_by_name",
    "list_adapters",
    "plugin_errors",
    "register_adapter",
    "unregister_adapter",
]

ENTRY_POINT_GROUP = "deepmr_kipoi.adapters"
#: modules whose import registers the package's own adapters
BUILTIN_ADAPTER_MODULES = (
    "model_adapters.generic",
    "model_adapters.deepsea",
    "model_adapters.basset",
    "model_adapters.bpnet_oskn",
)
#: the adapter for models that no other adapter serves (any Kipoi PyTorch/Keras model with vector
#: outputs)
FALLBACK_ADAPTER = "kipoi-generic"


@dataclass(frozen=True)
class AdapterInfo:
    """A registered adapter.

    Attributes
    ----------
    name : str
        Adapter name (also matched as a model name).
    description : str
        One line for ``deepmr adapters``.
    patterns : tuple of str
        ``fnmatch`` patterns of the model names it serves (default: its name).
    load : callable
        ``load(request: LoadRequest) -> PredictiveModel``.
    origin : str
        Where it came from: ``"<module>"`` or ``"entry point <name> (<distribution>)"``.
    """

    name: str
    description: str
    patterns: tuple[str, ...]
    load: Callable = field(repr=False, compare=False)
    origin: str = ""

    def matches(self, model_name: str) -> bool:
        """True when ``model_name`` is this adapter's name or matches one of its patterns."""
        return model_name == self.name or any(
            fnmatch.fnmatchcase(model_name, p) for p in self.patterns
        )


@dataclass(frozen=True)
class PluginError:
    """An entry point that could not be loaded."""

    entry_point: str
    error: str


class Registry:
    """A set of adapters plus the entry-point group they may also come from.

    The package keeps one default registry (used by the module-level functions); tests and embedding
    code can make their own.

    Parameters
    ----------
    group : str or None
        Entry-point group to load plugins from on first lookup (None: none).
    builtins : tuple of str
        Modules to import on first lookup, after the entry points (their import registers adapters;
        a module an entry point already imported is not imported again).
    """

    def __init__(self, group: str | None = ENTRY_POINT_GROUP, builtins: tuple[str, ...] = ()):
        self._group = group
        self._builtins = tuple(builtins)
        self._adapters: dict[str, AdapterInfo] = {}
        self._order: list[str] = []
        self._plugin_errors: list[PluginError] = []
        self._plugins_loaded = group is None and not self._builtins
        self._loading_origin: str | None = None

    # -- registration ---------------------------------------------------------------------

    def register(
        self,
        name: str,
        load: Callable,
        *,
        description: str = "",
        patterns: Iterable[str] | None = None,
        replace: bool = True,
    ) -> AdapterInfo:
        """Register ``load`` as the adapter ``name``; see :func:`register_adapter`."""
        if not isinstance(name, str) or not name.strip():
            raise DeepMRInputError("adapter name must be a non-empty string")
        if not callable(load):
            raise DeepMRInputError(
                f"adapter {name!r}: load must be callable, got {type(load).__name__}"
            )
        if isinstance(patterns, str):
            patterns = (patterns,)
        patterns = tuple(patterns) if patterns is not None else (name,)
        if not description:
            doc = (getattr(load, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        if name in self._adapters and not replace:
            raise DeepMRInputError(
                f"adapter {name!r} is already registered; pass replace=True to override"
            )
        origin = self._loading_origin or getattr(load, "__module__", "") or ""
        info = AdapterInfo(
            name=name, description=description, patterns=patterns, load=load, origin=origin
        )
        if name in self._adapters:
            self._order.remove(name)
            logger.debug("adapter %r replaced (now from %s)", name, origin)
        self._adapters[name] = info
        self._order.append(name)
        return info

    def unregister(self, name: str) -> None:
        """Remove the adapter ``name`` (no error when it is not registered)."""
        if self._adapters.pop(name, None) is not None:
            self._order.remove(name)

    # -- lookup ---------------------------------------------------------------------------

    def _ensure_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        if self._group is not None:
            for ep in metadata.entry_points(group=self._group):
                self.load_entry_point(ep)
        for module in self._builtins:
            self._loading_origin = f"{module} (built in)"
            try:
                importlib.import_module(module)
            except Exception as err:  # noqa: BLE001 - e.g. a missing optional dependency: report it
                message = f"{type(err).__name__}: {err}"
                self._plugin_errors.append(PluginError(entry_point=module, error=message))
                logger.warning("built-in adapter module %s failed to load: %s", module, message)
            finally:
                self._loading_origin = None

    def load_entry_point(self, ep: metadata.EntryPoint) -> None:
        """Import one entry point (a module that registers adapters, or an adapter function).

        Errors are recorded in :meth:`plugin_errors` and logged, not raised.
        """
        dist = getattr(getattr(ep, "dist", None), "name", None)
        origin = f"entry point {ep.name}" + (f" ({dist})" if dist else "")
        before = set(self._adapters)
        self._loading_origin = origin
        try:
            obj = ep.load()
            if callable(obj) and set(self._adapters) == before and not isinstance(obj, type):
                self.register(ep.name, obj)
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break the others
            message = f"{type(err).__name__}: {err}"
            self._plugin_errors.append(
                PluginError(entry_point=f"{ep.name} = {ep.value}", error=message)
            )
            logger.warning("adapter plugin %s = %s failed to load: %s", ep.name, ep.value, message)
        finally:
            self._loading_origin = None

    def list(self) -> list[AdapterInfo]:
        """All adapters, sorted by name."""
        self._ensure_plugins()
        return sorted(self._adapters.values(), key=lambda a: a.name.lower())

    def get(self, model_name: str) -> AdapterInfo | None:
        """The adapter serving ``model_name``, or None.

        Exact adapter names win; among pattern matches, the longest pattern without wildcards
        counts as most specific, and on ties the most recent registration wins (so a user's adapter
        overrides a plugin's).
        """
        self._ensure_plugins()
        if model_name in self._adapters:
            return self._adapters[model_name]
        best, best_key = None, None
        for rank, name in enumerate(self._order):
            info = self._adapters[name]
            for pattern in info.patterns:
                if fnmatch.fnmatchcase(model_name, pattern):
                    literal = sum(ch not in "*?[]" for ch in pattern)
                    key = (literal, rank)
                    if best_key is None or key > best_key:
                        best, best_key = info, key
        return best

    def get_by_name(self, name: str) -> AdapterInfo:
        """The adapter registered as ``name``.

        Raises
        ------
        DeepMRInputError
            Listing the registered names.
        """
        self._ensure_plugins()
        if name not in self._adapters:
            raise DeepMRInputError(
                f"no adapter named {name!r}; registered: {', '.join(sorted(self._adapters)) or 'none'}"
            )
        return self._adapters[name]

    def find(self, model_names: Iterable[str], adapter: str | None = None) -> AdapterInfo:
        """The adapter for a model: ``adapter`` by name when given, else the first of
        ``model_names`` that an adapter serves (see :meth:`get`), else :data:`FALLBACK_ADAPTER`.

        Raises
        ------
        DeepMRInputError
            ``adapter`` names no registered adapter, or the fallback is not registered.
        """
        if adapter is not None:
            return self.get_by_name(adapter)
        for name in model_names:
            info = self.get(name)
            if info is not None:
                return info
        return self.get_by_name(FALLBACK_ADAPTER)

    def plugin_errors(self) -> list[PluginError]:
        """Entry points that failed to load."""
        self._ensure_plugins()
        return list(self._plugin_errors)

    def describe(self) -> list[str]:
        """Lines for ``deepmr adapters``: one per adapter (name, patterns, description), then one per
        plugin that failed to load."""
        adapters = self.list()
        if not adapters:
            lines = ["no adapters registered"]
        else:
            width = max(len(a.name) for a in adapters)
            lines = []
            for a in adapters:
                served = ", ".join(p for p in a.patterns if p != a.name)
                served = f" [models: {served}]" if served else ""
                lines.append(f"{a.name:<{width}}  {a.description}{served}")
        for err in self._plugin_errors:
            lines.append(f"plugin failed to load: {err.entry_point}: {err.error}")
        return lines


_DEFAULT = Registry(ENTRY_POINT_GROUP, builtins=BUILTIN_ADAPTER_MODULES)


def register_adapter(
    name: str,
    description: str = "",
    patterns: Iterable[str] | None = None,
    *,
    replace: bool = True,
) -> Callable[[Callable], Callable]:
    """Decorator registering ``load(request) -> PredictiveModel`` as an adapter.

    Parameters
    ----------
    name : str
        Adapter name; ``load_model(name)`` finds it.
    description : str
        One line for ``deepmr adapters`` (default: the first line of the function's docstring).
    patterns : iterable of str, optional
        ``fnmatch`` patterns of Kipoi model names the adapter serves, e.g.
        ``("DeepSEA/predict", "DeepSEA/beluga")`` (default: just ``name``).
    replace : bool
        Whether an adapter of the same name may be replaced (default True: the newest wins).

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """

    def decorate(load: Callable) -> Callable:
        _DEFAULT.register(name, load, description=description, patterns=patterns, replace=replace)
        return load

    return decorate


def unregister_adapter(name: str) -> None:
    """Remove the adapter ``name`` from the default registry."""
    _DEFAULT.unregister(name)


def list_adapters() -> list[AdapterInfo]:
    """All registered adapters (entry-point plugins included), sorted by name."""
    return _DEFAULT.list()


def get_adapter(model_name: str) -> AdapterInfo | None:
    """The adapter serving ``model_name`` (exact name or pattern), or None."""
    return _DEFAULT.get(model_name)


def get_adapter_by_name(name: str) -> AdapterInfo:
    """The adapter registered as ``name``; ``DeepMRInputError`` listing the names when there is none."""
    return _DEFAULT.get_by_name(name)


def find_adapter(model_names: Iterable[str], adapter: str | None = None) -> AdapterInfo:
    """The adapter :func:`~deepmr_kipoi.kipoi_models.load_model` uses; see :meth:`Registry.find`.

    Parameters
    ----------
    model_names : iterable of str
        Names to look up, most specific first (a model name, or a directory's trailing components).
    adapter : str, optional
        An adapter name that overrides the lookup.

    Returns
    -------
    AdapterInfo
    """
    return _DEFAULT.find(model_names, adapter)


def plugin_errors() -> list[PluginError]:
    """Entry-point plugins that failed to load (each with its error message)."""
    return _DEFAULT.plugin_errors()


def describe_adapters() -> list[str]:
    """Lines for the ``deepmr adapters`` command: ``name  description [models: patterns]`` per
    adapter, then any plugin that failed to load."""
    return _DEFAULT.describe()
