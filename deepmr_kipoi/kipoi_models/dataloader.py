"""Reference sequences from a Kipoi model's own default dataloader, as ACGT one-hot."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models._compat import import_kipoi, kipoi_output_to_log
from deepmr_kipoi.kipoi_models.describe import describe_model
from deepmr_kipoi.kipoi_models.groups import checked_description, find_group
from deepmr_kipoi.kipoi_models.sources import resolve

__all__ = ["dataloader_sequences"]


def dataloader_sequences(
    name_or_dir: str,
    source=None,
    dataloader_args: Mapping[str, Any] | None = None,
    n: int | None = None,
    *,
    trust_model_code: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Reference sequences from the model's default Kipoi dataloader, as ACGT one-hot ``(N, L, 4)``.

    The dataloader gets ``dataloader_args`` on top of its ``model.yaml`` defaults (e.g.
    ``intervals_file`` and ``fasta_file`` for kipoiseq's interval dataloaders). Deep MR never uses
    targets, so a dataloader with an ``ignore_targets`` argument gets ``ignore_targets=True`` (and
    ``label_dtype=str``) unless the caller sets it: a BED file with extra columns (a name column) is
    read as intervals only.

    Parameters
    ----------
    name_or_dir : str
        Kipoi model name or model directory.
    source : str, kipoi Source or None
        As in :func:`describe_model`.
    dataloader_args : mapping, optional
        Arguments of the dataloader.
    n : int or None
        Use only the first ``n`` sequences.
    trust_model_code : bool
        As in :func:`describe_model`.

    Returns
    -------
    ids : list of str
        ``chrom:start-end`` where the dataloader reports ranges, else ``dataloader_<i>``.
    onehot : numpy.ndarray, shape (N, L, 4)
        ACGT one-hot.

    Raises
    ------
    DeepMRInputError
        No one-hot dataloader, arguments it rejects, or no sequences.
    """
    from deepmr_kipoi import sequences as seqmod

    desc = describe_model(name_or_dir, source=source, trust_model_code=trust_model_code)
    if desc.dataloader is None or desc.layout is None:
        raise DeepMRInputError(
            f"{name_or_dir} has no default dataloader of one-hot sequences; pass --fasta (with --bed)"
        )
    factory = _dataloader_factory(name_or_dir, source, desc, trust_model_code)
    args = _with_targets_ignored(factory, dict(dataloader_args or {}))
    try:
        loader = factory(**args)
    except TypeError as err:
        raise DeepMRInputError(
            f"the dataloader of {name_or_dir} rejected its arguments ({err}); give them as "
            "--dataloader-args KEY=VALUE (e.g. intervals_file=peaks.bed fasta_file=genome.fa)"
        ) from None
    ids, parts = _read_batches(loader, desc.input_name, n)
    if not parts:
        raise DeepMRInputError(
            f"the dataloader of {name_or_dir} yielded no sequences; check its intervals file"
        )
    x = np.concatenate(parts)[: n if n is not None else None]
    onehot = seqmod.reorder_alphabet(seqmod.from_layout(x, desc.layout), desc.alphabet, "ACGT")
    return ids[: len(onehot)], onehot


def _dataloader_factory(name_or_dir, source, desc, trust_model_code: bool):
    """The model's default dataloader, found as ``kipoi.get_model`` finds it.

    The description is the checked one (a group member's is its rendered template, which has no
    folder of its own for Kipoi's ``"dir"`` source); a dataloader path is resolved in the model's
    source (``<model name>/PATH``) for a group member, else from the model's folder.
    """
    kipoi = import_kipoi()
    name, _, source_obj = resolve(name_or_dir, source, trust_model_code)
    with kipoi_output_to_log():
        dl = checked_description(source_obj, name, trust_model_code).default_dataloader
        if hasattr(dl, "get"):
            return dl.get()
        if find_group(source_obj, name) is not None:
            path = dl.split(":", 1)[1] if ":" in dl else dl
            return kipoi.get_dataloader_factory(
                os.path.normpath(os.path.join("/" + name, path)[1:]), source=source_obj
            )
        return kipoi.get_dataloader_factory(
            os.path.normpath(os.path.join(desc.model_dir, dl)), source="dir"
        )


def _with_targets_ignored(factory, args: dict) -> dict:
    """``args`` plus ``ignore_targets=True`` (and ``label_dtype=str``) where the dataloader takes
    them and the caller did not set them: Deep MR never reads targets."""
    target = getattr(factory, "__init__", factory)
    try:
        accepts = set(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        accepts = set()
    if "ignore_targets" in accepts and "ignore_targets" not in args:
        args["ignore_targets"] = True
        if "label_dtype" in accepts:
            # kipoiseq parses every column after the third with label_dtype (float) even when
            # targets are ignored; as text, a name column reads too
            args.setdefault("label_dtype", str)
    return args


def _read_batches(loader, input_name: str | None, n: int | None):
    """Sequence ids and input arrays of the loader's batches, until ``n`` sequences are read."""
    ids: list[str] = []
    parts: list[np.ndarray] = []
    total = 0
    for batch in loader.batch_iter(batch_size=64):
        x = batch["inputs"]
        if isinstance(x, dict):
            x = x[input_name]
        x = np.asarray(x)
        meta = batch.get("metadata") or {}
        ranges = meta.get("ranges", meta) if isinstance(meta, dict) else {}
        if all(k in ranges for k in ("chr", "start", "end")):
            ids += [
                f"{c}:{s}-{e}" for c, s, e in zip(ranges["chr"], ranges["start"], ranges["end"])
            ]
        else:
            ids += [f"dataloader_{total + i}" for i in range(len(x))]
        parts.append(x)
        total += len(x)
        if n is not None and total >= n:
            break
    return ids, parts
