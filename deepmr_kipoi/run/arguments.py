"""A run's configuration from the command line: ``deepmr run``'s options and a ``--config`` file.

Options given on the command line override the file's settings; paths are made absolute (those of
a config file relative to its folder) so that the ``config.yaml`` a run writes works from any
folder. ``deepmr reanalyze`` reads its settings through the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import config as cfg


def _unique_key_loader():
    """A safe YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise DeepMRInputError(
                        f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice; keep one"
                    )
                with contextlib.suppress(TypeError):
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Loader


def load_yaml(path: str) -> dict:
    """The settings of a YAML config file (``--config``).

    Parameters
    ----------
    path : str

    Returns
    -------
    dict
        The file's mapping of settings, as written (paths not yet made absolute).

    Raises
    ------
    DeepMRInputError
        A missing or unreadable file, invalid YAML, a key given twice, or no mapping.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise DeepMRInputError(f"config file not found: {p}; check the --config path")
    try:
        data = yaml.load(p.read_text(), Loader=_unique_key_loader()) or {}  # noqa: S506 - a SafeLoader
    except DeepMRInputError as err:
        raise DeepMRInputError(f"{p} {err}") from None
    except UnicodeDecodeError:
        raise DeepMRInputError(f"{p} is not a text file; give a YAML config file") from None
    except yaml.YAMLError as err:
        raise DeepMRInputError(f"{p} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DeepMRInputError(f"{p} must hold a mapping of settings (key: value)")
    return data


#: Config keys holding paths of inputs (and ``out``), made absolute so a written config.yaml works
#: from any folder.
_PATH_KEYS = ("fasta", "bed", "calibrator", "calibration_table", "out")


def _absolute(value, base: Path):
    """``value`` as an absolute path relative to ``base``; other values are left to validation."""
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str((base / Path(value).expanduser()).resolve())
    return str(Path(value).expanduser()) if isinstance(value, str) and value else value


def _absolute_model(value, base: Path):
    """A model named by a file (``file.py:function``) or a folder, made absolute; names stay.
    Panels (``--model LABEL=MODEL`` items, or a ``{label: member}`` mapping) member by member."""
    if isinstance(value, (list, tuple)):
        return [_absolute_model(v, base) for v in value]
    if isinstance(value, dict):
        return {
            k: {**v, "model": _absolute_model(v.get("model"), base)}
            if isinstance(v, dict)
            else _absolute_model(v, base)
            for k, v in value.items()
        }
    if not isinstance(value, str):
        return value
    label, sep, spec = value.partition("=")
    if sep and spec and "/" not in label and not (base / value).exists():
        return f"{label}={_absolute_model(spec, base)}"
    target, _, attr = value.rpartition(":")
    if target.endswith(".py") and attr.isidentifier():
        return f"{_absolute(target, base)}:{attr}"
    if value.startswith((".", "~")) or os.sep in value or (base / value).is_dir():
        return _absolute(value, base) if (base / Path(value).expanduser()).exists() else value
    return value


def absolute_paths(values: dict, base: Path) -> dict:
    """Settings with their input paths (and ``out``, weight files, a file of feature names, a
    model file or folder) made absolute relative to ``base``, so that a written config.yaml works
    from any folder.

    Parameters
    ----------
    values : dict
        Settings by name.
    base : Path
        The folder relative paths are read from (a config file's folder, or the working folder).

    Returns
    -------
    dict
        A copy of ``values``.
    """
    out = dict(values)
    for key in _PATH_KEYS:
        if key in out:
            out[key] = _absolute(out[key], base)
    if isinstance(out.get("weight_files"), (list, tuple)):
        out["weight_files"] = [_absolute(w, base) for w in out["weight_files"]]
    names = out.get("feature_names")
    if isinstance(names, (list, tuple)) and len(names) == 1 and (base / str(names[0])).is_file():
        out["feature_names"] = [_absolute(names[0], base)]  # a file of names
    if "model" in out:
        out["model"] = _absolute_model(out["model"], base)
    return out


#: Config keys of the executor: given on the command line, they replace all of a --config file's.
EXECUTOR_KEYS = ("executor", "dask_workers", "dask_address")


def dataloader_args(items: list[str]) -> dict:
    """``--dataloader-args``: ``KEY=VALUE`` items, or Kipoi's JSON form (one ``{...}`` object).

    Parameters
    ----------
    items : list of str

    Returns
    -------
    dict
        Argument names to values (strings, or the JSON object's values).
    """
    import json

    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            parsed = json.loads(items[0])
        except ValueError as err:
            raise DeepMRInputError(
                f'--dataloader-args is not valid JSON ({err}); give \'{{"key": "value"}}\' or KEY=VALUE'
            ) from None
        if not isinstance(parsed, dict):
            raise DeepMRInputError("--dataloader-args JSON must be an object of argument names")
        return parsed
    pairs = [item.split("=", 1) for item in items]
    bad = [item for item, p in zip(items, pairs) if len(p) != 2 or not p[0]]
    if bad:
        raise DeepMRInputError(
            f"--dataloader-args takes KEY=VALUE items or one JSON object, got {bad[0]!r}"
        )
    return dict(pairs)


def config_from_args(args: argparse.Namespace) -> cfg.RunConfig:
    """The ``RunConfig`` of ``deepmr run``: a ``--config`` file's settings (paths relative to the
    file), overridden by the options given on the command line (paths relative to the working
    folder).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options; only those given are attributes (``argparse.SUPPRESS`` defaults).

    Returns
    -------
    RunConfig
        Not yet validated.
    """
    values = {}
    if "config" in args:
        # paths in a config file are relative to that file's folder
        values = absolute_paths(load_yaml(args.config), Path(args.config).resolve().parent)
    values.pop("config", None)
    if any(k in args for k in EXECUTOR_KEYS):
        # where a run computes is chosen anew: --dask-address on the command line replaces the
        # --dask-workers a resumed run's config.yaml recorded, instead of clashing with it
        for k in EXECUTOR_KEYS:
            values.pop(k, None)
        if "executor" not in args:
            values["executor"] = "dask"  # only the Dask options were given
    given = {
        k: v
        for k, v in vars(args).items()
        if k not in ("config", "func", "command", "quiet", "verbose", "debug")
    }
    values.update(absolute_paths(given, Path.cwd()))
    if isinstance(values.get("save_effects"), str) and values["save_effects"] in ("yes", "no"):
        values["save_effects"] = values["save_effects"] == "yes"
    if isinstance(values.get("dataloader_args"), list):
        values["dataloader_args"] = dataloader_args(values["dataloader_args"])
    if isinstance(values.get("model"), list):  # --model once: one model; LABEL=MODEL items: a panel
        values["model"] = cfg.model_setting(values["model"])
    values["progress"] = not args.quiet
    config = cfg.RunConfig.from_dict(values)
    if not config.out:
        raise DeepMRInputError("no results folder given; pass --out DIR")
    return config
