"""The files Kipoi reads for a model, found and checked without letting Kipoi read any of them.

Kipoi parses a model's YAML files with PyYAML's unsafe loader, which runs a Python tag such as
``!!python/object/apply:os.system [...]`` as the file is read, and renders a zoo group's
``model-template.yaml`` with an unsandboxed Jinja2, whose expressions can reach Python internals.
:func:`check_model_yaml` therefore walks every YAML text Kipoi would read for a model, the way Kipoi
resolves them, and refuses Python tags in one line before Kipoi opens any file:

* the model: ``<source>/<name>/model.yml`` or ``model.yaml`` where one exists (every other
  ``*.yml``/``*.yaml`` file of that folder is scanned too), else the first folder above holding a
  ``model-template.yml``/``.yaml`` and a ``models.tsv`` (a model group): the template is rendered
  for the model's row in Jinja2's sandbox (template code reaching Python internals is refused) and
  the rendered text scanned, so a tag inserted through a ``models.tsv`` cell is found as well;
* its default dataloader: ``default_dataloader: PATH`` (Kipoi's default ``.``) names a dataloader
  folder resolved as ``kipoi.get_model`` resolves it (``<model name>/PATH`` in the model's source)
  and as the description reader does (``<model folder>/PATH``); each is read like a model
  (``dataloader.yml``/``.yaml``, or a ``dataloader-template`` group);
* the ``dependencies: conda_file:`` of any of these descriptions, which Kipoi reads as YAML while it
  parses the description.

:func:`model_code_files` lists the same files plus the code of the folders involved (``*.py`` and
the JSON/TSV files next to them), for the run's fingerprint: editing any of them changes the resume
key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

#: The YAML tag prefix of PyYAML's Python constructors (``!!python/...``).
PYTHON_TAG = "tag:yaml.org,2002:python/"
_TRUST = "Pass trust_model_code=True (--trust-model-code) only if you trust the model's author"
#: Suffixes of the files of a model or dataloader folder that enter the code fingerprint.
CODE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".tsv")
#: Folder levels below a model or dataloader folder searched for code files, and the most files.
CODE_DEPTH, CODE_MAX_FILES = 3, 500


@dataclass(frozen=True)
class YamlText:
    """One YAML text Kipoi reads for a model.

    Attributes
    ----------
    path : str
        The file it comes from (a group's template for a rendered text).
    text : str or None
        The text Kipoi parses (the rendered template for a group member); None: the file itself,
        streamed from disk.
    label : str
        How messages name it.
    """

    path: str
    text: str | None
    label: str


def python_tag(text, label: str) -> tuple[str, int] | None:
    """The first Python tag in a YAML text or stream, with its line, or None.

    The text is parsed into events by libyaml (``yaml.CSafeLoader``), streamed from a file object:
    nothing is composed or constructed, so an alias bomb costs no more than its text, a large file
    takes libyaml's time (about a second for 5 MB), and every node of every document is seen, keys
    included (``%TAG`` handles and verbatim tags arrive resolved).

    Parameters
    ----------
    text : str or text file object
    label : str
        How messages name it.

    Raises
    ------
    DeepMRInputError
        When the text is not valid YAML.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for event in yaml.parse(text, Loader=loader):
            tag = getattr(event, "tag", None)
            if tag and str(tag).startswith(PYTHON_TAG):
                return "!!" + tag[len("tag:yaml.org,2002:") :], event.start_mark.line + 1
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise DeepMRInputError(f"{label} is not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise DeepMRInputError(
            f"{label} is not a text YAML file; point at a Kipoi model directory"
        ) from None
    return None


def _refuse_tags(doc: YamlText) -> None:
    if doc.text is None:
        with open(doc.path, encoding="utf-8") as stream:
            found = python_tag(stream, doc.label)
    else:
        found = python_tag(doc.text, doc.label)
    if found is not None:
        tag, line = found
        raise DeepMRInputError(
            f"{doc.label} (line {line}) has the YAML tag '{tag}', which runs Python code when Kipoi "
            f"reads it; refused. {_TRUST}"
        )


def _parse(doc: YamlText, strict: bool = True) -> dict:
    """A description already scanned for Python tags, read safely (a non-mapping reads as {}; with
    ``strict=False`` an unreadable one too)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if doc.text is None:
            with open(doc.path, encoding="utf-8") as stream:
                data = yaml.load(stream, Loader=loader)
        else:
            data = yaml.load(doc.text, Loader=loader)
    except UnicodeDecodeError:
        if not strict:
            return {}
        raise DeepMRInputError(
            f"{doc.path} is not a text YAML file; point at a Kipoi model directory"
        ) from None
    except yaml.YAMLError as err:
        if not strict:
            return {}
        problem = " ".join(str(err).split())
        raise DeepMRInputError(f"{doc.label} cannot be read by Kipoi: {problem}") from None
    return data if isinstance(data, dict) else {}


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise DeepMRInputError(
            f"{path} is not a text YAML file; point at a Kipoi model directory"
        ) from None


def _first_file(folder: str, basename: str) -> str | None:
    # Kipoi's order and test (kipoi_utils.get_file_path): .yml before .yaml, the first that exists
    for ext in (".yml", ".yaml"):
        path = os.path.join(folder, basename + ext)
        if os.path.exists(path):
            return path
    return None


def _group_folder(path: str, which: str) -> str | None:
    """The folder of a component group above ``path`` (Kipoi's ``LocalComponentGroup.group_path``)."""
    folder = path
    while folder not in ("", os.sep):
        if os.path.isfile(os.path.join(folder, "models.tsv")) and _first_file(
            folder, f"{which}-template"
        ):
            return folder
        folder = os.path.dirname(folder)
    return None


def _render(template: str, row: dict, label: str) -> str:
    """The template rendered in Jinja2's sandbox; template code reaching Python internals is refused."""
    from jinja2 import TemplateError
    from jinja2.sandbox import SandboxedEnvironment, SecurityError

    class _Strict(SandboxedEnvironment):
        # the plain sandbox renders an unsafe attribute as empty text; Kipoi's Jinja2 would run it
        def unsafe_undefined(self, obj, attribute):
            raise SecurityError(f"attribute {attribute!r} of {type(obj).__name__}")

    try:
        return _Strict().from_string(_read_text(template)).render(**row)
    except SecurityError as err:
        raise DeepMRInputError(
            f"{label} reaches into Python objects while it is rendered ({err}), which runs code when "
            f"Kipoi renders it; refused. {_TRUST}"
        ) from None
    except TemplateError as err:
        raise DeepMRInputError(
            f"{label} is not a valid Kipoi template: {' '.join(str(err).split())}"
        ) from None


@dataclass(frozen=True)
class _Component:
    """A model or dataloader as Kipoi finds it: its folder, its texts, its description."""

    folder: str
    texts: tuple[YamlText, ...]
    description: dict
    files: tuple[str, ...]


def _component(path: str, which: str, check: bool = True) -> _Component | None:
    """The model (``which="model"``) or dataloader at ``path`` as Kipoi would read it, scanned for
    Python tags (``check=False``: only found, for the fingerprint of a trusted model).

    Returns None where Kipoi finds no such component (Kipoi then reports it, reading nothing).
    """
    own = _first_file(path, which)
    if own is not None:
        # only the file Kipoi reads (``.yml`` before ``.yaml``): other YAML files of the folder
        # (annotations, examples) are never parsed by Kipoi, so they are neither read nor refused
        doc = YamlText(own, None, own)
        if check:
            _refuse_tags(doc)
        return _Component(path, (doc,), _parse(doc, check), (own,))
    group = _group_folder(path, which)
    if group is None:
        return None
    import pandas as pd

    template = _first_file(group, f"{which}-template")
    tsv = os.path.join(group, "models.tsv")
    member = os.path.relpath(path, group)
    try:
        table = pd.read_csv(tsv, sep="\t", comment="#")  # as Kipoi reads it
    except (ValueError, OSError) as err:
        raise DeepMRInputError(
            f"{tsv} is not a readable model table ({' '.join(str(err).split())})"
        ) from None
    if "model" not in table or member not in set(table["model"]):
        return None
    label = f"{template} (rendered for {member})"
    row = table[table["model"] == member].iloc[0].to_dict()
    try:
        doc = YamlText(template, _render(template, row, label), label)
    except DeepMRInputError:
        if check:
            raise
        return _Component(group, (), {}, (template, tsv))
    if check:
        _refuse_tags(doc)
    return _Component(group, (doc,), _parse(doc, check), (template, tsv))


def _source_root(source_obj, source_label: str) -> str:
    if source_label == "dir":
        return os.getcwd()
    root = getattr(source_obj, "local_path", None)
    if not root:
        raise DeepMRInputError(
            f"the Kipoi source {source_label!r} has no local folder whose model files could be checked "
            f"before Kipoi reads them; refused. {_TRUST}"
        )
    return os.path.abspath(root)


def _dataloader_paths(name: str, root: str, model: _Component) -> list[str]:
    """Folders ``default_dataloader`` names, as ``kipoi.get_model`` and the description reader
    resolve them."""
    dl = model.description.get("default_dataloader", ".")
    if not isinstance(dl, str):
        return []  # a {defined_as: ...} import: Python code, no YAML
    path = dl.split(":", 1)[1] if ":" in dl else dl
    # kipoi.get_model: os.path.join("/" + model, path)[1:] within the source
    in_source = os.path.join(root, os.path.join("/" + os.path.normpath(name), path)[1:])
    paths = [os.path.normpath(in_source), os.path.normpath(os.path.join(model.folder, dl))]
    # a group member has no folder of its own: the paths need not exist
    return list(dict.fromkeys(paths))


def _conda_texts(component: _Component) -> list[YamlText]:
    deps = component.description.get("dependencies")
    conda = deps.get("conda_file") if isinstance(deps, dict) else None
    if not isinstance(conda, str) or not conda:
        return []
    # Kipoi reads it relative to the description's folder, or to the working folder for a template
    paths = {
        os.path.normpath(os.path.join(base, conda)) for base in (component.folder, os.getcwd())
    }
    return [YamlText(p, None, p) for p in sorted(paths) if os.path.isfile(p)]


def _components(name: str, source_obj, source_label: str, check: bool = True) -> list[_Component]:
    """The model and its dataloaders, each scanned as it is found (a refusal stops the walk)."""
    root = _source_root(source_obj, source_label)
    model = _component(os.path.join(root, os.path.normpath(name)), "model", check)
    if model is None:
        return []
    found = [model]
    for path in _dataloader_paths(name, root, model):
        dl = _component(path, "dataloader", check)
        if dl is not None and all(dl.files != c.files for c in found):
            found.append(dl)
    for component in list(found):
        conda = _conda_texts(component)
        for doc in conda if check else ():
            _refuse_tags(doc)
        if conda:
            found.append(
                _Component(component.folder, tuple(conda), {}, tuple(d.path for d in conda))
            )
    return found


def check_source_config(root: str) -> list[str]:
    """Refuse a local model source whose ``config.yaml`` holds a Python tag, before Kipoi reads it.

    Kipoi reads ``<source>/config.yaml`` with its unsafe loader as soon as the source object is
    made (``kipoi.sources.LocalSource``), before any model of it is looked up: this is called first.

    Parameters
    ----------
    root : str
        The source's folder.

    Returns
    -------
    list of str
        The file checked (empty when the source has none).

    Raises
    ------
    DeepMRInputError
        One line naming the file, the line and the tag, and ``--trust-model-code``.
    """
    path = os.path.join(os.path.realpath(root), "config.yaml")
    if not os.path.exists(path):  # Kipoi's own test
        return []
    _refuse_tags(YamlText(path, None, path))
    return [path]


#: Kipoi source types whose folder ``config.yaml`` Kipoi reads as it makes them (a git source's
#: local clone is a local source).
_SOURCE_TYPES_WITH_CONFIG = ("git", "git-lfs", "local")


def check_kipoi_configuration() -> list[str]:
    """Refuse the Kipoi configuration when ``import kipoi`` would run a Python tag, before it does.

    ``import kipoi`` reads ``~/.kipoi/config.yaml`` (``/tmp/.kipoi`` when the home folder is not
    writable) with PyYAML's unsafe loader and makes every model source it lists (without that
    file: the zoo's git clone at ``~/.kipoi/models``); each git or local source reads its folder's
    ``config.yaml`` with the same loader as it is made. Both are scanned here, the way Kipoi finds
    them.

    Returns
    -------
    list of str
        The files checked.

    Raises
    ------
    DeepMRInputError
        One line naming the file, the line and the tag, and ``--trust-model-code``.
    """
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):  # Kipoi's own fallback
        base = "/tmp"
    kipoi_dir = os.path.join(base, ".kipoi")
    config = os.path.join(kipoi_dir, "config.yaml")
    roots = [os.path.join(kipoi_dir, "models")]  # Kipoi's default source, without a config
    checked = []
    if os.path.exists(config):
        doc = YamlText(config, None, config)
        _refuse_tags(doc)
        checked.append(config)
        sources = _parse(doc, strict=False).get("model_sources")
        if isinstance(sources, dict):
            roots = [
                str(v["local_path"])
                for v in sources.values()
                if isinstance(v, dict)
                and v.get("type") in _SOURCE_TYPES_WITH_CONFIG
                and v.get("local_path")
            ]
    for root in roots:
        checked += check_source_config(root)
    return checked


def check_model_yaml(name: str, source_obj, source_label: str) -> list[str]:
    """Refuse a model any of whose YAML texts holds a Python tag, before Kipoi reads any of them.

    Parameters
    ----------
    name : str
        The model's name in its source (an absolute folder for ``source_label == "dir"``).
    source_obj : kipoi Source
        Where Kipoi reads the model from (a local or git source with a local copy, or ``"dir"``).
    source_label : str

    Returns
    -------
    list of str
        The YAML files checked.

    Raises
    ------
    DeepMRInputError
        One line naming the file, the line and the tag (or template code reaching Python
        internals), and ``--trust-model-code``.
    """
    return [p for c in _components(name, source_obj, source_label) for p in c.files]


def _code_in(folder: str) -> list[str]:
    out = []
    base_depth = folder.rstrip(os.sep).count(os.sep)
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith((".", "__pycache__"))
            and d != "downloaded"
            and here.count(os.sep) - base_depth < CODE_DEPTH
        )
        out += [os.path.join(here, f) for f in sorted(files) if f.endswith(CODE_SUFFIXES)]
        if len(out) > CODE_MAX_FILES:
            break
    return out[:CODE_MAX_FILES]


def model_code_files(name: str, source_obj, source_label: str) -> list[str]:
    """Every file of a Kipoi model that is code or description: what the fingerprint hashes.

    Nothing is refused here (a trusted model's files are listed too); texts are read safely.

    The YAML files (and group templates and tables) of the model and its dataloaders, the model's
    ``module_file`` where it lies elsewhere, and the ``*.py``, ``*.yaml``, ``*.json`` and ``*.tsv``
    files of their folders (``CODE_DEPTH`` levels down, at most ``CODE_MAX_FILES``; ``downloaded/``
    holds weights, compared by md5 elsewhere).

    Returns
    -------
    list of str
        Absolute paths, sorted, each once.
    """
    files: list[str] = []
    for component in _components(name, source_obj, source_label, check=False):
        files += list(component.files) + _code_in(component.folder)
        args = component.description.get("args")
        module_file = args.get("module_file") if isinstance(args, dict) else None
        if isinstance(module_file, str):
            files.append(os.path.normpath(os.path.join(component.folder, module_file)))
    return sorted({os.path.abspath(f) for f in files if os.path.isfile(f)})
