"""What a model offers a Deep MR run, without reading its YAML by hand: ``deepmr info MODEL``.

:func:`model_info` describes a Kipoi model name, model directory or templated group member from its
description alone (no weights are loaded, nothing is downloaded); a Python factory
(``file.py:function``, ``module:function``) or a registered adapter name that Kipoi does not know is
loaded to ask the model itself.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from deepmr_kipoi.errors import DeepMRInputError

#: Features listed one per line; more are counted.
MAX_LISTED = 60


@dataclass(frozen=True)
class ModelInfo:
    """A model as a Deep MR run sees it.

    Attributes
    ----------
    spec : str
        What the user named (``--model``).
    kind : str
        ``"Kipoi model"``, ``"Python factory"`` or ``"registered adapter"``.
    features : tuple of str, length F
        Output feature names, in output order (their index is the position).
    layout : str or None
        Input layout (``"NLC"`` (N, L, 4), ``"NCL"`` (N, 4, L), ...); None where not declared.
    sequence_length : int or None
    alphabet : str
        One-hot channel order the model expects (callers always pass ACGT).
    weights : tuple of (str, str, bool)
        (argument, path, present) of each model file.
    uncertainty : str
        How this model gets the uncertainty Deep MR needs, in words.
    adapter : str
        The adapter that loads it (Kipoi models), else "".
    model_type : str
        Kipoi model class or the Python type.
    """

    spec: str
    kind: str
    features: tuple[str, ...]
    layout: str | None
    sequence_length: int | None
    alphabet: str
    weights: tuple[tuple[str, str, bool], ...]
    uncertainty: str
    adapter: str = ""
    model_type: str = ""

    def describe(self, label: str = "", window: str = "") -> list[str]:
        """The model's own lines: kind, input, weights, uncertainty and features (named
        ``label/feature`` when ``label`` is given; ``window``: where a panel member reads)."""
        shown = {"NLC": "(N, L, 4)", "NCL": "(N, 4, L)", "NC1L": "(N, 4, 1, L)"}
        head = f"{self.spec}: {self.kind}" + (f" ({self.model_type})" if self.model_type else "")
        out = [f"model {label} = {head}" if label else head]
        out.append(
            f"input: {self.layout or 'layout not declared'} {shown.get(self.layout or '', '')}, "
            f"length {self.sequence_length or 'not fixed'}, alphabet {self.alphabet}{window}"
        )
        if self.adapter:
            out.append(f"adapter: {self.adapter}")
        for arg, path, present in self.weights:
            out.append(f"weights ({arg}): {'present' if present else 'MISSING'} {path}")
        out.append(f"uncertainty: {self.uncertainty}")
        names = [f"{label}/{f}" if label else f for f in self.features]
        out.append(
            f"features ({len(names)}; index name{', as the panel names them' if label else ''}):"
        )
        out += [f"  {i:>4} {name}" for i, name in enumerate(names[:MAX_LISTED])]
        if len(names) > MAX_LISTED:
            out.append(f"  ... and {len(names) - MAX_LISTED} more")
        return out

    def lines(self) -> list[str]:
        """The description as the command prints it."""
        out = self.describe()
        first = self.features[0] if self.features else "NAME"
        last = self.features[-1] if self.features else "NAME"
        spec = shlex.quote(self.spec)
        out.append("run it:")
        out.append(
            f"  deepmr run --model {spec} --fasta seqs.fa --exposures {shlex.quote(first)} "
            f"--outcomes {shlex.quote(last)} --out run1"
        )
        out.append(
            f"  deepmr_kipoi.analyze({self.spec!r}, 'seqs.fa', exposures={first!r}, "
            f"outcomes={last!r}, out='run1')"
        )
        return out


_KIPOI_UNCERTAINTY = (
    "MC dropout (--uncertainty mc_dropout --n-samples 30) where the network has dropout "
    "layers; a deep ensemble from retrained copies (--weights FILE1 FILE2 ... --uncertainty "
    "ensemble)"
)


def _kipoi_info(spec: str, source, trust_model_code: bool) -> ModelInfo:
    from deepmr_kipoi import registry
    from deepmr_kipoi.kipoi_models import describe_model
    from deepmr_kipoi.kipoi_models.load import _lookup_names

    desc = describe_model(spec, source, trust_model_code=trust_model_code)
    try:
        adapter = registry.find_adapter(_lookup_names(desc.name)).name
    except DeepMRInputError:
        adapter = ""
    return ModelInfo(
        spec,
        "Kipoi model",
        tuple(desc.feature_names),
        desc.layout,
        desc.sequence_length,
        desc.alphabet,
        tuple((w.arg, w.path, w.present) for w in desc.weight_files),
        _KIPOI_UNCERTAINTY,
        adapter,
        desc.model_type,
    )


def _loaded_info(spec: str, kind: str, source, trust_model_code: bool) -> ModelInfo:
    from deepmr_kipoi.run.config import RunConfig
    from deepmr_kipoi.run.inputs import load_configured_model

    config = RunConfig(model=spec, source=source, trust_model_code=trust_model_code)
    model, identity = load_configured_model(config)
    s = int(identity.get("n_samples") or 0)
    what = type(model).__name__
    uncertainty = (
        f"{what} with {s} samples"
        if s >= 2
        else (getattr(model, "uncertainty_hint", None) or "none: S = 1; give several members")
    )
    weights = tuple(
        ("weights", str(w.get("path")), bool(w.get("md5"))) for w in identity.get("weights") or []
    )
    return ModelInfo(
        spec,
        kind,
        tuple(str(f) for f in model.feature_names),
        getattr(model, "layout", None) or "NLC",
        getattr(model, "sequence_length", None),
        getattr(model, "alphabet", None) or "ACGT",
        weights,
        uncertainty,
        "",
        what,
    )


def model_info(spec: str, *, source=None, trust_model_code: bool = False) -> ModelInfo:
    """Describe the model ``spec`` names, as ``deepmr info`` prints it.

    Parameters
    ----------
    spec : str
        A Kipoi model name (``"DeepSEA/predict"``, a templated group member such as
        ``"DeepBind/Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF"``), a model directory, a registered
        adapter name, or a factory ``"file.py:function"`` / ``"module:function"`` (which is run).
    source : str, optional
        Kipoi source.
    trust_model_code : bool
        Let Kipoi read a ``model.yaml`` with Python tags.

    Returns
    -------
    ModelInfo

    Raises
    ------
    DeepMRInputError
        An unknown model, or one whose description or factory fails, in one line.
    """
    from deepmr_kipoi.run.model import is_factory_spec

    if not isinstance(spec, str) or not spec:
        raise DeepMRInputError("give a model: a Kipoi name, a model directory or a factory")
    if is_factory_spec(spec):
        return _loaded_info(spec, "Python factory", source, trust_model_code)
    try:
        return _kipoi_info(spec, source, trust_model_code)
    except DeepMRInputError as err:
        from deepmr_kipoi import registry

        if registry.get_adapter(spec) is None:
            raise err from None
    return _loaded_info(spec, "registered adapter", source, trust_model_code)


@dataclass(frozen=True)
class PanelInfo:
    """A model panel as a Deep MR run sees it: every member's :class:`ModelInfo` under its label.

    Attributes
    ----------
    members : tuple of (str, ModelInfo)
        (label, the member's description), in panel order.
    """

    members: tuple[tuple[str, ModelInfo], ...]

    def lines(self) -> list[str]:
        """The description as ``deepmr info --model a=M1 --model b=M2`` prints it."""
        from deepmr_kipoi.predictive.panel import member_offset

        lengths = [m.sequence_length for _, m in self.members if m.sequence_length]
        length = max(lengths) if lengths else None
        out = [
            f"model panel of {len(self.members)} models; features named label/feature"
            + (f"; sequences of {length} bases (the longest input)" if length else "")
        ]
        for label, info in self.members:
            window = ""
            if length and info.sequence_length and info.sequence_length < length:
                start = member_offset(length, info.sequence_length)
                window = f"; reads bases {start}-{start + info.sequence_length} (centred)"
            out += ["", *info.describe(label, window)]
        labels = [label for label, _ in self.members]
        specs = " ".join(f"--model {shlex.quote(f'{lab}={m.spec}')}" for lab, m in self.members)
        ex, oc = f"{labels[0]}/*", f"{labels[-1]}/*"
        given = ", ".join(f"{lab!r}: {m.spec!r}" for lab, m in self.members)
        out += [
            "",
            "run it:",
            f"  deepmr run {specs} --fasta seqs.fa --exposures {shlex.quote(ex)} "
            f"--outcomes {shlex.quote(oc)} --out run1",
            f"  deepmr_kipoi.analyze({{{given}}}, 'seqs.fa', exposures={ex!r}, outcomes={oc!r}, "
            "out='run1')",
        ]
        return out


def panel_info(models, *, source=None, trust_model_code: bool = False) -> PanelInfo:
    """Describe every member of a model panel, with the names its features get in a panel run.

    Parameters
    ----------
    models : mapping of str to str
        ``{label: model}``, each model as :func:`model_info` takes it.
    source : str, optional
        Kipoi source of every member.
    trust_model_code : bool

    Returns
    -------
    PanelInfo

    Raises
    ------
    DeepMRInputError
        A bad label or a member :func:`model_info` refuses (the line names the member).
    """
    from deepmr_kipoi.predictive.panel import check_label

    members = []
    for label, spec in models.items():
        check_label(label)
        try:
            members.append(
                (label, model_info(spec, source=source, trust_model_code=trust_model_code))
            )
        except DeepMRInputError as err:
            raise DeepMRInputError(f"panel member {label!r}: {err}") from err
    return PanelInfo(tuple(members))
