"""``torch.fx`` tracing with concrete shapes for fast ISM (:mod:`deepmr_kipoi.predictive._torch_fastism`).

An example input answers the shape questions a network asks while it is traced (``len()``,
``x.size(d)``, ``x.shape``, ``x.dim()``), so control flow on them is resolved at trace time; a
submodule that still cannot be traced becomes one opaque graph node.
"""

from __future__ import annotations

import contextlib
import inspect

import torch


class Unsupported(Exception):
    """The network uses something the windowed propagation cannot follow (the member runs fully)."""


_MISSING = object()


def _concrete(v):
    """The example value behind a proxy (or ``v`` itself), ``_MISSING`` when there is none."""
    if isinstance(v, torch.fx.Proxy):
        return v.node.meta.get("concrete", _MISSING)
    return v


def _batch_derived(v) -> bool:
    return isinstance(v, torch.fx.Proxy) and bool(v.node.meta.get("batch"))


class _ShapeProxy(torch.fx.Proxy):
    """A proxy that answers shape questions from an example input: ``len()``, ``x.size(d)``/``x.shape``
    for ``d`` >= 1 and ``x.dim()`` become Python integers, so control flow on them (the Kipoi zoo's
    ``1 == len(x.size())`` wrappers, ``range(x.size(1))`` loops) is resolved while tracing. The batch
    size stays symbolic: the traced graph serves any number of mutants of inputs of this shape."""

    def _value(self):
        return self.node.meta.get("concrete", _MISSING)

    def size(self, dim=None):
        value = self._value()
        if not isinstance(value, torch.Tensor):
            return self.tracer.create_proxy(
                "call_method", "size", (self,) if dim is None else (self, dim), {}
            )
        if dim is None:
            return (
                self.tracer.create_proxy("call_method", "size", (self, 0), {}),
                *value.shape[1:],
            )
        dim = int(dim) % value.dim()
        if dim == 0:
            return self.tracer.create_proxy("call_method", "size", (self, 0), {})
        return int(value.shape[dim])

    @property
    def shape(self):
        return self.size()

    def dim(self):
        value = self._value()
        if isinstance(value, torch.Tensor):
            return value.dim()
        return self.tracer.create_proxy("call_method", "dim", (self,), {})

    @property
    def ndim(self):
        return self.dim()

    def __len__(self) -> int:
        value = self._value()
        if isinstance(value, tuple | list | torch.Size) and not _batch_derived(self):
            return len(value)
        return super().__len__()


@contextlib.contextmanager
def _unpatched_modules():
    """``nn.Module`` calls and attribute reads as outside tracing (``torch.fx`` patches them so that
    they emit graph nodes), for computing example values in the middle of a trace."""
    from torch.fx import _symbolic_trace as fx_trace

    patched = torch.nn.Module.__call__, torch.nn.Module.__getattr__
    torch.nn.Module.__call__ = fx_trace._orig_module_call
    torch.nn.Module.__getattr__ = fx_trace._orig_module_getattr
    try:
        yield
    finally:
        torch.nn.Module.__call__, torch.nn.Module.__getattr__ = patched


def _plain_getattr(obj, name: str):
    """``getattr`` past the tracer's patched ``Module.__getattr__`` (which would emit a node)."""
    if isinstance(obj, torch.nn.Module):
        for table in (obj._parameters, obj._buffers, obj._modules):
            if name in table:
                return table[name]
        if name in obj.__dict__:
            return obj.__dict__[name]
    return getattr(obj, name)


class _ShapeTracer(torch.fx.Tracer):
    """``torch.fx`` tracing with an example input (see :class:`_ShapeProxy`); a submodule that still
    cannot be traced becomes one opaque graph node (``opaque`` names it and the reason), which the
    plan runs on full activations while the rest of the network keeps its windows."""

    def __init__(self, example: torch.Tensor | None):
        super().__init__()
        self.example = example
        #: module path -> why it could not be traced into
        self.opaque: dict[str, str] = {}

    def proxy(self, node):
        return _ShapeProxy(node, self)

    def create_proxy(
        self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None
    ):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if self.example is None:
            return proxy
        found = []
        torch.fx.node.map_aggregate(
            (args, kwargs), lambda v: found.append(v) if isinstance(v, torch.fx.Proxy) else v
        )
        values = torch.fx.node.map_aggregate((args, kwargs), _concrete)
        missing = []
        torch.fx.node.map_aggregate(values, lambda v: missing.append(v) if v is _MISSING else v)
        if missing:
            return proxy
        a, k = values
        with torch.no_grad(), _unpatched_modules():
            if kind == "placeholder":
                value = self.example
            elif kind == "get_attr":
                value = self.root
                for part in str(target).split("."):
                    value = _plain_getattr(value, part)
            elif kind == "call_function":
                value = target(*a, **k)
            elif kind == "call_method":
                value = getattr(a[0], target)(*a[1:], **k)
            else:
                value = self.root.get_submodule(target)(*a, **k)
        proxy.node.meta["concrete"] = value
        if (kind == "call_method" and target == "size" and tuple(a[1:]) == (0,)) or (
            not isinstance(value, torch.Tensor) and any(_batch_derived(p) for p in found)
        ):
            proxy.node.meta["batch"] = True
        return proxy

    def to_bool(self, obj) -> bool:
        value = _concrete(obj)
        if value is _MISSING or isinstance(value, torch.Tensor) or _batch_derived(obj):
            # data- or batch-size-dependent control flow cannot be fixed by one example
            return super().to_bool(obj)
        return bool(value)

    def call_module(self, m, forward, args, kwargs):
        proxies = []
        torch.fx.node.map_aggregate(
            (args, kwargs), lambda v: proxies.append(v) if isinstance(v, torch.fx.Proxy) else v
        )
        if not proxies:
            # computing an example value (create_proxy): run the module itself, record nothing
            return forward(*args, **kwargs)
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        last = self.graph._root.prev
        stack = dict(self.module_stack)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as err:  # noqa: BLE001 - any tracing failure: the module becomes opaque
            while self.graph._root.prev is not last:
                self.graph.erase_node(self.graph._root.prev)
            self.module_stack.clear()
            self.module_stack.update(stack)
            self.opaque[path] = f"{type(err).__name__}: {err}"
            return self.create_proxy("call_module", path, args, kwargs)


class _OneInput(torch.nn.Module):
    """Calls the wrapped module with one input, so ``torch.fx`` never sees its optional arguments."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module
        params = list(inspect.signature(module.forward).parameters.values())
        if any(
            p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in params[1:]
        ):
            raise Unsupported("the model's forward needs more than one input")

    def forward(self, x):
        return self.module(x)
