"""Stage 1, inputs: the run's model, loaded from what ``RunConfig.model`` names (a Kipoi model name
or directory, a registered adapter, or a ``file.py:function`` factory), described for the record and
put on the configured device.

A user mistake raises :class:`~deepmr_kipoi.errors.DeepMRInputError` with one line naming the fix;
an exception of the user's factory module is named in that line, not shown as our traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path

from deepmr_kipoi._files import file_md5
from deepmr_kipoi.errors import DeepMRInputError, one_line
from deepmr_kipoi.run.config import RunConfig

logger = logging.getLogger(__name__)


def is_factory_spec(spec: str) -> bool:
    """Whether ``spec`` names a model factory, ``file.py:function`` or ``module:function``."""
    if ":" not in spec or Path(spec).exists():
        return False
    target, _, attr = spec.rpartition(":")
    return attr.isidentifier() and (
        target.endswith(".py") or all(p.isidentifier() for p in target.split("."))
    )


def _factory_arguments(factory, spec: str, config: RunConfig) -> dict:
    """The run settings a factory accepts; refuse settings it cannot take and arguments it needs."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    offered = {
        "seed": config.seed,
        "n_samples": config.n_samples,
        "uncertainty": config.uncertainty,
    }
    for key, option in (("n_samples", "--n-samples"), ("uncertainty", "--uncertainty")):
        if offered[key] is not None and key not in params:
            raise DeepMRInputError(
                f"{option} does not apply to the model factory {spec} (it takes no {key!r} "
                f"argument); drop {option} or add the argument to the factory"
            )
    needed = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in offered
    ]
    if needed:
        raise DeepMRInputError(
            f"the model factory {spec} needs the argument(s) {', '.join(needed)}; give them "
            "defaults (it is called with only seed, n_samples and uncertainty where it accepts them)"
        )
    return {k: v for k, v in offered.items() if k in params and v is not None}


def _load_factory(spec: str, config: RunConfig):
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise DeepMRInputError(
                    f"model factory file not found: {target}; check the --model path"
                )
            name = "deepmr_factory_" + hashlib.md5(str(path.resolve()).encode()).hexdigest()[:12]
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            # registered before it runs, as an import would: dataclasses and pickling look the
            # module up by name while its body executes
            sys.modules[name] = module
            try:
                mod_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(target)
    except DeepMRInputError:
        raise
    except SystemExit as err:
        raise DeepMRInputError(
            f"the model factory module {target} called sys.exit({err.code!r}) while being imported; "
            "a factory module must not exit"
        ) from err
    except Exception as err:  # noqa: BLE001 - the user's module failed to import; say which and why
        raise DeepMRInputError(
            f"cannot import the model factory module {target} ({one_line(err)}); fix that file"
        ) from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise DeepMRInputError(f"{spec!r}: {attr!r} is not a function in {target}")
    kwargs = _factory_arguments(factory, spec, config)
    try:
        model = factory(**kwargs)
    except SystemExit as err:
        raise DeepMRInputError(
            f"the model factory {spec} called sys.exit({err.code!r}) instead of returning a model; "
            "return a PredictiveModel"
        ) from err
    except Exception as err:  # noqa: BLE001 - the user's factory failed; name it, not our code
        raise DeepMRInputError(
            f"the model factory {spec} raised {one_line(err)}; fix the factory"
        ) from err
    if not (hasattr(model, "predict_samples") and hasattr(model, "feature_names")):
        raise DeepMRInputError(
            f"the model factory {spec} returned {type(model).__name__}, not a PredictiveModel (an "
            "object with feature_names and predict_samples, e.g. predictive.DeepEnsemble); return one"
        )
    return model


#: Options of models loaded by Kipoi or an adapter, which a factory (its own loader) cannot take.
_KIPOI_OPTIONS = (
    ("weight_files", "--weights"),
    ("source", "--source"),
    ("adapter", "--adapter"),
    ("alphabet", "--alphabet"),
    ("feature_names", "--feature-names"),
)


def _refuse_kipoi_options(config: RunConfig, spec: str) -> None:
    for field, option in _KIPOI_OPTIONS:
        if getattr(config, field):
            raise DeepMRInputError(
                f"{option} does not apply to the model factory {spec} (a factory loads and names "
                f"its own model, weights included); drop {option} or use it inside the factory"
            )


def check_applicable(config: RunConfig, model) -> None:
    """Refuse options that do not apply to the loaded model, instead of ignoring them.

    Raises
    ------
    DeepMRInputError
        ``n_samples`` for a deep ensemble (its sample count is its member count).
    """
    from deepmr_kipoi.predictive import DeepEnsemble

    if config.n_samples is not None and isinstance(model, DeepEnsemble):
        raise DeepMRInputError(
            f"--n-samples applies to MC dropout, but the model is a deep ensemble of "
            f"{model.n_samples} members; drop --n-samples"
        )


def load_configured_model(config: RunConfig):
    """Load the model a config names, and describe its identity (``prepare_model`` also puts it on
    the configured device; this is the loading step alone).

    Parameters
    ----------
    config : RunConfig

    Returns
    -------
    model : PredictiveModel
    identity : dict
        ``name``, ``source``, ``weights_md5`` (where known) and the model's declared properties.

    Raises
    ------
    DeepMRInputError
        When no model is named or it cannot be loaded.
    """
    spec = config.model
    if isinstance(spec, dict):
        return _load_panel(config)
    if not spec:
        raise DeepMRInputError(
            "no model given; pass --model with a Kipoi model name, a model directory, a registered "
            "adapter (see `deepmr adapters`) or a Python factory module:function"
        )
    identity: dict = {"name": spec, "source": config.source}
    if (
        spec.startswith(("./", "../", "/", "~"))
        and not is_factory_spec(spec)
        and not Path(spec).expanduser().exists()
    ):
        raise DeepMRInputError(
            f"model folder not found: {spec}; check the --model path (a Kipoi model directory holds "
            "a model.yaml)"
        )
    if is_factory_spec(spec):
        _refuse_kipoi_options(config, spec)
        model = _load_factory(spec, config)
        identity["source"] = "python"
        target = spec.rpartition(":")[0]
        if target.endswith(".py"):
            identity["factory_md5"] = file_md5(Path(target))
    else:
        model = _kipoi_model(spec, config, identity)
    for key in ("weights_md5", "identity"):
        value = getattr(model, key, None)
        if isinstance(value, dict):
            identity.update(value)
        elif isinstance(value, str):
            identity[key] = value
    identity.update(
        n_samples=int(getattr(model, "n_samples", 0) or 0),
        n_features=len(model.feature_names),
        sequence_length=getattr(model, "sequence_length", None),
        alphabet=getattr(model, "alphabet", None),
        type=type(model).__name__,
    )
    return model, identity


def _load_panel(config: RunConfig):
    """A model panel: every member loaded as a single run would load it, under its label.

    Returns
    -------
    model : ModelPanel
    identity : dict
        ``name`` (``"panel of a = MODEL, b = MODEL"``), ``panel`` (every member's identity by
        label: its features, input length, samples, weights) and the panel's samples and features.
    """
    from deepmr_kipoi.predictive.panel import ModelPanel
    from deepmr_kipoi.run.config import panel_members

    models, members = {}, {}
    for label, member_config in panel_members(config):
        model, ident = load_configured_model(member_config)
        models[label], members[label] = model, ident
        ident["feature_names"] = [f"{label}/{f}" for f in model.feature_names]
        shown = ident["feature_names"][:12]
        logger.info(
            "panel member %s (%s, %s bp, %d samples), features: %s%s",
            label,
            ident.get("name"),
            ident.get("sequence_length"),
            ident.get("n_samples"),
            ", ".join(shown),
            ", ..." if len(model.feature_names) > len(shown) else "",
        )
    panel = ModelPanel(models)
    identity = {
        "name": "panel of "
        + ", ".join(f"{label} = {m.get('name')}" for label, m in members.items()),
        "panel": panel_identity(panel, members),
        "n_samples": panel.n_samples,
        "n_features": len(panel.feature_names),
        "sequence_length": panel.sequence_length,
        "alphabet": panel.alphabet,
        "type": type(panel).__name__,
    }
    return panel, identity


def panel_identity(panel, loaded: dict | None = None) -> dict:
    """Every member's identity by label (``loaded``'s where the member was loaded by name), with
    its input length, samples and features as the panel names them."""
    out = {}
    for label, model in zip(panel.labels, panel.models):
        ident = dict((loaded or {}).get(label) or {"name": type(model).__name__})
        ident.update(
            sequence_length=getattr(model, "sequence_length", None),
            n_samples=int(getattr(model, "n_samples", 0) or 0),
            feature_names=[f"{label}/{f}" for f in model.feature_names],
        )
        out[label] = ident
    return out


def _kipoi_model(spec: str, config: RunConfig, identity: dict):
    """A Kipoi model or registered adapter through ``kipoi_models.load_model``; its source, folder
    and weight files (path and md5) are added to ``identity``."""
    from deepmr_kipoi import kipoi_models

    weights = list(config.weight_files) or None
    names = config.feature_names
    model = kipoi_models.load_model(
        spec,
        source=config.source,
        alphabet=config.alphabet,
        uncertainty=config.uncertainty,
        n_samples=config.n_samples,
        seed=config.seed,
        weight_files=weights,
        adapter=config.adapter,
        download=config.download,
        trust_model_code=config.trust_model_code,
        download_option="--download",
        # one entry may be a file of names (kipoi_models.feature_names_from)
        feature_names=(names[0] if len(names) == 1 else list(names)) or None,
    )
    if weights:
        identity["weights"] = [{"path": str(w), "md5": file_md5(Path(w))} for w in weights]
    try:
        desc = kipoi_models.describe_model(
            spec, source=config.source, trust_model_code=config.trust_model_code
        )
    except Exception as err:  # noqa: BLE001 - the description is provenance only
        logger.debug("describe_model(%s) failed: %s", spec, err)
        desc = None
    if desc is not None:
        identity.update(source=desc.source, model_dir=desc.model_dir, model_type=desc.model_type)
        if not weights:
            identity["weights"] = [
                {
                    "arg": w.arg,
                    "path": w.path,
                    "md5": w.md5 or (file_md5(Path(w.path)) if w.present else None),
                }
                for w in desc.weight_files
            ]
    return model


def prepare_model(config: RunConfig, model=None, identity: dict | None = None):
    """The run's model, ready to predict: loaded (unless given) and put on ``config.device``.

    The one preparation of a model, used by the client (``plan.make_plan``) and by every Dask
    worker (``executors``), so that a worker's model runs where the client's would.

    Parameters
    ----------
    config : RunConfig
        Validated.
    model : PredictiveModel, optional
        A model handed to the run instead of ``config.model``.
    identity : dict, optional
        Its identity (default: its type name; samples and features are filled in).

    Returns
    -------
    model : PredictiveModel
    identity : dict
        As :func:`load_configured_model`'s, plus ``device``: where the model's PyTorch members run.

    Raises
    ------
    DeepMRInputError
        When no model is named or it cannot be loaded, or the device does not exist here.
    """
    from deepmr_kipoi.predictive import move_to_device

    if model is None:
        model, identity = load_configured_model(config)
    elif not (hasattr(model, "predict_samples") and hasattr(model, "feature_names")):
        raise DeepMRInputError(
            f"model= must be a PredictiveModel (feature_names, predict_samples), got {type(model).__name__}; "
            "to load one by name, set RunConfig(model=...)"
        )
    else:
        identity = dict(identity or {"name": config.model or type(model).__name__})
        identity.setdefault("n_samples", int(getattr(model, "n_samples", 0) or 0))
        identity.setdefault("n_features", len(model.feature_names))
        if hasattr(model, "labels") and hasattr(model, "models"):  # a panel handed over
            identity.setdefault("panel", panel_identity(model))
    identity = dict(identity)
    identity["device"] = move_to_device(model, config.device)
    return model, identity
