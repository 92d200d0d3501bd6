"""Templated Kipoi model groups: ``model-template.yaml`` + ``models.tsv``, expanded as Kipoi does.

Most models of the Kipoi zoo by count live in groups (DeepBind alone has several hundred): a folder
holds a Jinja2 template of ``model.yaml`` and a table with one row per model, and Kipoi renders the
template with a model's row (``jinja2.Template(text).render(**row)``, the row read with
``pandas.read_csv(sep="\\t", comment="#")``) to get that model's description. A group member is named
by the group's path and its ``model`` column, e.g. ``DeepBind/Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF``
(group ``DeepBind``, model ``Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF``), and its downloads live under
``<group>/downloaded/model_files/<model>/<arg>/<md5>``.

Here the template is rendered the same way but in Jinja2's sandbox (a template that reaches into
Python objects is refused instead of run), and the rendered text is read with ``yaml.safe_load``
before Kipoi parses it (Kipoi's reader would run Python tags, which a template or a ``models.tsv`` cell
could carry). :class:`CheckedGroupSource` then hands Kipoi exactly the checked text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models._compat import check_safe_yaml_text, kipoi_output_to_log

__all__ = ["CheckedGroupSource", "ModelGroup", "find_group"]

#: the component kinds Kipoi keeps in groups (``model-template``, ``dataloader-template``)
KINDS = ("model", "dataloader")


@dataclass(frozen=True)
class ModelGroup:
    """A model of a templated Kipoi group.

    Attributes
    ----------
    path : str
        The group's folder (holds ``model-template.yaml`` and ``models.tsv``).
    model : str
        The model's name inside the group (its ``model`` column in ``models.tsv``).
    """

    path: str
    model: str

    @property
    def table(self) -> str:
        return os.path.join(self.path, "models.tsv")

    def template(self, kind: str = "model") -> str | None:
        """The group's ``<kind>-template.yml`` (or ``.yaml``), None when it has none.

        Kipoi's precedence (``kipoi_utils.get_file_path``): ``.yml`` first, the first that exists.
        """
        for ext in ("yml", "yaml"):
            path = os.path.join(self.path, f"{kind}-template.{ext}")
            if os.path.exists(path):
                return path
        return None

    def row(self) -> dict:
        """The model's row of ``models.tsv``, read as Kipoi reads it (tab-separated, ``#`` comments).

        Raises
        ------
        DeepMRInputError
            The table has no ``model`` column or no row for this model.
        """
        import pandas as pd

        try:
            table = pd.read_csv(self.table, sep="\t", comment="#")
        except (ValueError, OSError) as err:
            raise DeepMRInputError(
                f"{self.table} is not a readable tab-separated table: {err}"
            ) from None
        if "model" not in table:
            raise DeepMRInputError(
                f"{self.table} has no 'model' column; Kipoi names group members by it"
            )
        rows = table[table["model"] == self.model]
        if rows.empty:
            known = ", ".join(map(str, table["model"].head(3)))
            raise DeepMRInputError(
                f"model {self.model!r} is not in {self.table} (first entries: {known}); check the name"
            )
        return rows.iloc[0].to_dict()

    def render(self, kind: str = "model", trust_model_code: bool = False) -> str | None:
        """The model's ``<kind>.yaml`` text: the group's template rendered with the model's row.

        Parameters
        ----------
        kind : {"model", "dataloader"}
        trust_model_code : bool
            False (default): render in Jinja2's sandbox and refuse Python tags in the result.

        Returns
        -------
        str or None
            None when the group has no template of this kind.

        Raises
        ------
        DeepMRInputError
            A template that is not valid Jinja2, that reaches into Python objects, or whose rendered
            text is not valid YAML or holds Python tags.
        """
        path = self.template(kind)
        if path is None:
            return None
        import jinja2
        import jinja2.sandbox

        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        missing: list[str] = []

        class _Recorded(jinja2.Undefined):
            # Kipoi renders a name the table lacks as empty text, which YAML reads as null (a
            # feature named 'None'): each one printed is recorded and refused below
            def __str__(self):
                missing.append(str(self._undefined_name))
                return ""

        cls = jinja2.Environment if trust_model_code else jinja2.sandbox.SandboxedEnvironment
        env = cls(undefined=_Recorded)
        where = f"{path} (rendered for model {self.model!r})"
        try:
            rendered = env.from_string(text).render(**self.row())
        except jinja2.exceptions.SecurityError as err:
            raise DeepMRInputError(
                f"{path} reaches into Python objects while it is rendered ({err}); refused. Pass "
                "trust_model_code=True (--trust-model-code) only if you trust the model's author"
            ) from None
        except jinja2.exceptions.TemplateError as err:
            line = f" line {err.lineno}" if getattr(err, "lineno", None) else ""
            raise DeepMRInputError(f"{path}{line} is not a valid Jinja2 template: {err}") from None
        if missing:
            raise DeepMRInputError(
                f"{path} uses the column {missing[0]!r}, which {self.table} lacks (model "
                f"{self.model!r}); add that column to the table or remove it from the template"
            )
        if not trust_model_code:
            check_safe_yaml_text(rendered, where)
        return rendered


def find_group(source_obj, name: str) -> ModelGroup | None:
    """The templated group that serves model ``name`` in a Kipoi source, None for other models.

    Parameters
    ----------
    source_obj : kipoi.sources.Source
        A local or git source (others have no groups on disk).
    name : str
        The model's name in the source, e.g. ``"DeepBind/Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF"``.
    """
    root = getattr(source_obj, "local_path", None)
    if not root or os.path.isabs(name) or not hasattr(source_obj, "get_group_name"):
        return None
    name = os.path.normpath(name)
    if os.path.isfile(os.path.join(root, name, "model.yaml")) or os.path.isfile(
        os.path.join(root, name, "model.yml")
    ):
        return None
    with kipoi_output_to_log():
        group = source_obj.get_group_name(name, "model")
    if group is None:
        return None
    path = os.path.join(root, group)
    return ModelGroup(path=os.path.normpath(path), model=os.path.relpath(name, group))


def checked_description(source_obj, name: str, trust_model_code: bool = False):
    """Kipoi's ``ModelDescription`` of ``name``; for a group member, parsed from the checked rendering.

    Raises
    ------
    DeepMRInputError
        As :meth:`ModelGroup.render`, or a rendered description Kipoi cannot parse.
    """
    group = find_group(source_obj, name)
    if group is None:
        return source_obj.get_model_descr(name)
    from kipoi.specs import ModelDescription

    text = group.render("model", trust_model_code)
    try:
        with kipoi_output_to_log():
            return ModelDescription.from_string(text)
    except Exception as err:  # noqa: BLE001 - Kipoi wraps every parse problem in a bare Exception
        problem = " ".join(str(err).split("Error:")[-1].split())
        # attrs' validation errors print as a tuple whose first item is the sentence that matters
        first = re.match(r"\(?(['\"])(.+?)\1, ", problem)
        problem = (first.group(2) if first else problem)[:300]
        raise DeepMRInputError(
            f"{group.template('model')} rendered for model {group.model!r} is not a Kipoi model "
            f"description: {problem}"
        ) from None


class CheckedGroupSource:
    """A Kipoi source whose group members' descriptions come from the checked rendering
    (:func:`checked_description`); everything else is the wrapped source's."""

    def __init__(self, source, trust_model_code: bool = False):
        self._source = source
        self._trust = bool(trust_model_code)

    def get_model_descr(self, model):
        return checked_description(self._source, model, self._trust)

    def __getattr__(self, name):
        return getattr(self._source, name)
