"""Stage 1, inputs: the calibration a run applies to its effect SEs, from a saved calibrator or
fitted on a labelled table of sequences (``calibration.fit_calibration``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import calibration
from deepmr_kipoi.calibration.labelled import Calibration, LabelledSequences, fit_calibration
from deepmr_kipoi.errors import DeepMRInputError, one_line
from deepmr_kipoi.run import checks
from deepmr_kipoi.run.config import RunConfig


def load_calibration(config: RunConfig, model, feature_names: list[str]) -> Calibration | None:
    """The calibration ``config`` asks for: a saved calibrator, or one fitted on a labelled table.

    Parameters
    ----------
    config : RunConfig
    model : PredictiveModel
        Predicts the calibration table's sequences (``calibration_table`` only).
    feature_names : list of str, length F

    Returns
    -------
    Calibration or None
        None when the config names no calibration.

    Raises
    ------
    DeepMRInputError
        Both or unreadable sources, features the model lacks, sequences of the wrong length.
    """
    if config.calibrator and config.calibration_table:
        raise DeepMRInputError("give either --calibrator or --calibration-table, not both")
    if not (config.calibrator or config.calibration_table):
        return None
    if config.calibrator:
        return _saved_calibration(Path(config.calibrator), feature_names)
    return _table_calibration(config, model, feature_names)


def _saved_calibration(path: Path, feature_names: list[str]) -> Calibration:
    """A calibrator saved by ``calibration.save``, its SE scales spread over the model's features."""
    n_feat = len(feature_names)
    if not path.is_file():
        raise DeepMRInputError(f"calibrator file not found: {path}; check the --calibrator path")
    try:
        cal = calibration.load(path)
    except (ValueError, KeyError, TypeError) as err:
        raise DeepMRInputError(
            f"{path} is not a saved calibrator ({one_line(err)[:120]}); give a file written by "
            "calibration.save"
        ) from None
    scale = np.asarray(cal.se_scale, dtype=np.float64)
    names = getattr(cal, "feature_names", None)
    full = np.ones(n_feat)
    if names:
        unknown = [f for f in names if f not in feature_names]
        if unknown:
            raise DeepMRInputError(
                f"calibrator {path} names features the model lacks: {', '.join(unknown[:5])}"
            )
        for f, s in zip(names, scale):
            full[feature_names.index(f)] = s
        used = tuple(names)
    elif scale.shape == (n_feat,):
        full, used = scale, tuple(feature_names)
    else:
        raise DeepMRInputError(
            f"calibrator {path} has {scale.size} SE scales but the model has {n_feat} features"
        )
    return Calibration(full, used, None, None, None, None, str(path), tuple(feature_names))


def _table_calibration(config: RunConfig, model, feature_names: list[str]) -> Calibration:
    """A calibration fitted on the config's labelled table (sequences predicted by ``model``)."""
    table = _read_table(Path(config.calibration_table))
    if "sequence" not in table.columns:
        raise DeepMRInputError(
            f"{config.calibration_table} needs a 'sequence' column plus one label column per feature"
        )
    cols = [c for c in table.columns if c in feature_names]
    if not cols:
        raise DeepMRInputError(
            f"{config.calibration_table} has no column named like a model feature "
            f"(e.g. {feature_names[0]!r})"
        )
    from deepmr_kipoi import sequences as seqmod

    seqs = table["sequence"].astype(str).tolist()
    lengths = {len(s) for s in seqs}
    model_length = getattr(model, "sequence_length", None)
    if len(lengths) != 1 or (model_length and lengths != {model_length}):
        raise DeepMRInputError(
            f"calibration sequences must all be {model_length or 'equally long'} bp, "
            f"got lengths {sorted(lengths)[:5]}"
        )
    y = checks.numeric_columns(table, cols, str(config.calibration_table))
    labelled = LabelledSequences(
        seqmod.one_hot(seqs), y, tuple(cols), source=str(config.calibration_table)
    )
    return fit_calibration(
        model,
        labelled,
        feature_names,
        method=config.calibration_method,
        batch_size=config.batch_size,
        aleatoric_variance=config.aleatoric_variance,
    )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DeepMRInputError(f"table not found: {path}; check the path")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        sep = "\t" if path.suffix in (".tsv", ".txt") else ","
        return pd.read_csv(path, sep=sep)
    except (ValueError, OSError) as err:  # a parser's or pyarrow's complaint about the file
        raise DeepMRInputError(
            f"{path} is not a readable table ({one_line(err)[:120]}); give CSV, TSV or Parquet"
        ) from None
