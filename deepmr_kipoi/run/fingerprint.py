"""Content fingerprints of a run's inputs and of the user code its model runs: what resume compares
besides the config's settings.

Every chunk key (:class:`~deepmr_kipoi.run.folder.RunKey`) hashes, per input, an md5 of its content:

* the reference sequences actually read (ids and one-hot bytes: the FASTA regions used, whatever
  their file or dataloader), the BED file, the calibration table or calibrator, the weight files
  given;
* the model's code: a ``file.py:function`` factory's file, a ``package.module:function`` factory's
  module, and the project-local modules either imports, followed through their own imports (a
  module is project-local when it lies outside the Python installation and its site-packages, and
  outside ``deepmr_kipoi``, whose version the config hash holds); a Kipoi model's YAML files, its
  ``module_file`` and the code of its model and dataloader folders
  (:func:`deepmr_kipoi.kipoi_models.files.model_code_files`).

Imports are found by reading the code (``import`` statements, relative ones included), not by
running it: a module imported by a computed name (``importlib.import_module(name)``) is not seen,
an approximation named here. At most ``MAX_CODE_FILES`` files are followed.

A run whose inputs differ in any of them is refused with a line naming which changed (or
recomputed under ``--force``); renaming or moving a file changes nothing.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from deepmr_kipoi._files import file_md5

#: The most user code files a fingerprint follows.
MAX_CODE_FILES = 200
#: Top-level packages never fingerprinted as user code (their version is in the config hash).
OWN_PACKAGES = ("deepmr_kipoi",)


def sequences_md5(ids: Sequence[str], onehot: np.ndarray) -> str:
    """md5 of reference sequences as read: their ids and their one-hot array (N, L, 4) as uint8."""
    h = hashlib.md5()
    h.update("\n".join(map(str, ids)).encode())
    h.update(np.ascontiguousarray(np.asarray(onehot) > 0.5, dtype=np.uint8).tobytes())
    h.update(str(np.shape(onehot)).encode())
    return h.hexdigest()


def input_fingerprint(config, identity: Mapping, ids: Sequence[str], onehot: np.ndarray) -> dict:
    """Per-input md5s of a run (see the module docstring).

    Parameters
    ----------
    config : RunConfig
        Validated.
    identity : mapping
        The model's identity: a ``model_dir`` there says the model came through Kipoi (everything
        else follows from the config, so a model handed over and the same model loaded from the
        config give one fingerprint).
    ids : sequence of str, length N
    onehot : ndarray, shape (N, L, 4)

    Returns
    -------
    dict of str to str
        Keys name the input as messages show it (``"sequences"``, ``"BED file"``, ``"model code
        helpers.py"``, ...).
    """
    out = {"sequences": sequences_md5(ids, onehot)}
    if isinstance(config.model, dict):  # a panel: every member's code, under its label
        from deepmr_kipoi.run.config import panel_members

        members = identity.get("panel") or {}
        for label, member in panel_members(config):
            kipoi = bool((members.get(label) or {}).get("model_dir"))
            code = code_fingerprint(
                member.model, member.source, kipoi=kipoi, trust_model_code=member.trust_model_code
            )
            out.update({f"{label}: {k}": v for k, v in code.items()})
    else:
        out.update(
            code_fingerprint(
                config.model,
                config.source,
                kipoi=bool(identity.get("model_dir")),
                trust_model_code=config.trust_model_code,
            )
        )
    for label, path in (
        ("BED file", config.bed),
        ("calibration table", config.calibration_table),
        ("calibrator", config.calibrator),
    ):
        if path:
            out[label] = file_md5(path)
    for i, w in enumerate(config.weight_files):
        out[f"weight file {i + 1}"] = file_md5(w)
    return out


def changed(old: Mapping | None, new: Mapping) -> list[str]:
    """The inputs whose fingerprints differ (inputs an older manifest did not record are skipped)."""
    if not old:
        return []
    return [k for k in sorted(set(old) | set(new)) if k in old and old.get(k) != new.get(k)]


# ---- user code --------------------------------------------------------------------------------


def code_fingerprint(
    spec: str | None, source=None, *, kipoi: bool = False, trust_model_code: bool = False
) -> dict:
    """md5s of the user code behind a model spec: ``{"model factory file": md5, "model code
    <path>": md5, ...}`` (empty for a model from an installed package or ``deepmr_kipoi``).

    A spec that is not a factory is read as a Kipoi model when it is a folder, a source is given,
    or ``kipoi`` says the model was loaded through Kipoi. ``trust_model_code`` as the run loaded
    it: a trusted source whose ``config.yaml`` has a Python tag is resolved (its model's code
    keyed) rather than refused.
    """
    if not isinstance(spec, str) or not spec:
        return {}
    target, sep, attr = spec.rpartition(":")
    if sep and attr.isidentifier() and target.endswith(".py") and Path(target).is_file():
        main = Path(target).resolve()
        files = project_files(main, [main.parent])
    elif sep and attr.isidentifier() and all(p.isidentifier() for p in target.split(".")):
        main = _find_module(target, _local_roots())
        files = [] if main is None else project_files(main, [])
    elif kipoi or source is not None or os.path.isdir(os.path.expanduser(spec)):
        return _kipoi_code(spec, source, trust_model_code)
    else:
        return {}
    if main is None:
        return {}
    base = main.parent
    out = {"model factory file": file_md5(main)}
    out.update({f"model code {_shown(f, base)}": file_md5(f) for f in files if f != main})
    return out


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _kipoi_code(spec: str, source, trust_model_code: bool = False) -> dict:
    """A Kipoi model's code files (a name Kipoi does not know, or a source without a local copy,
    gives nothing)."""
    from deepmr_kipoi.errors import DeepMRInputError
    from deepmr_kipoi.kipoi_models.files import model_code_files
    from deepmr_kipoi.kipoi_models.sources import resolve

    try:
        name, label, source_obj = resolve(spec, source, trust_model_code)
        files = model_code_files(name, source_obj, label)
    except DeepMRInputError:
        return {}
    base = Path(os.path.commonpath(files)) if files else Path("/")
    base = base.parent if base.is_file() else base
    return {f"model code {_shown(Path(f), base)}": file_md5(f) for f in files}


def _installed_roots() -> list[Path]:
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return [Path(p).resolve() for p in paths if p]


def _local_roots() -> list[Path]:
    """Folders on ``sys.path`` that hold project code (not the installation or site-packages)."""
    installed = _installed_roots()
    roots = []
    for p in sys.path:
        path = Path(p or os.getcwd()).resolve()
        if path.is_dir() and not any(path == r or r in path.parents for r in installed):
            roots.append(path)
    return list(dict.fromkeys(roots))


def _find_module(name: str, roots: Sequence[Path]) -> Path | None:
    """The source file of module ``name`` under ``roots``, found without importing anything."""
    if name.split(".")[0] in OWN_PACKAGES:
        return None
    parts = name.split(".")
    for root in roots:
        for candidate in (
            root.joinpath(*parts).with_suffix(".py"),
            root.joinpath(*parts, "__init__.py"),
        ):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _imports(path: Path) -> list[tuple[str, int, list[str]]]:
    """(module, relative level, imported names) of every import statement in a file."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, 0, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [a.name for a in node.names]))
    return found


def _resolve_import(
    path: Path, module: str, level: int, names: list[str], roots: list[Path]
) -> list[Path]:
    if level:
        base = path.parent
        for _ in range(level - 1):
            base = base.parent
        search, dotted = [base], module
    else:
        search, dotted = roots, module
    parts = dotted.split(".") if dotted else []
    # importing a.b.c runs a/__init__.py and a/b/__init__.py first; `from a import b` may import a.b
    wanted = [".".join(parts[: i + 1]) for i in range(len(parts))] + [
        ".".join([*parts, n]) for n in names
    ]
    hits = []
    for full in wanted:
        found = _find_module(full, search) if full and "*" not in full else None
        if found is not None:
            hits.append(found)
    return hits


def project_files(main: Path, extra_roots: Sequence[Path]) -> list[Path]:
    """``main`` and the project-local modules it imports, followed through their imports.

    Parameters
    ----------
    main : Path
        A Python source file.
    extra_roots : sequence of Path
        Folders searched for absolute imports before ``sys.path``'s project folders (the
        factory file's folder, where a script's ``import helpers`` finds ``helpers.py``).

    Returns
    -------
    list of Path
        Sorted, ``main`` included, at most ``MAX_CODE_FILES``.
    """
    roots = list(dict.fromkeys([*map(Path, extra_roots), *_local_roots()]))
    seen, todo = {main}, [main]
    while todo and len(seen) < MAX_CODE_FILES:
        path = todo.pop()
        for module, level, names in _imports(path):
            for hit in _resolve_import(path, module, level, names, roots):
                if hit not in seen and len(seen) < MAX_CODE_FILES:
                    seen.add(hit)
                    todo.append(hit)
    return sorted(seen)
