"""``deepmr demo``: a complete Deep MR run on the small model shipped with the package.

The demo model (``simulate.load_demo_model``) was trained by the project's simulation code on
sequences with a planted causal structure between its output features, so the true global effects
are known (``simulate.demo_truth``). The run uses the demo's own reference sequences (``simulate.demo_sequences``: every sequence
carries the motifs of the three features), writes the
whole results folder, and the report's headline compares the estimated with the true global effects.
No network is needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pandas as pd

from deepmr_kipoi import pipeline, results, sequences
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.folder import check_out_dir, remove_created

logger = logging.getLogger(__name__)

DEMO_FACTORY = "deepmr_kipoi.simulate:load_demo_model"
DEMO_DATA = Path(__file__).parent / "data" / "demo"
DEFAULT_N_SEQUENCES = 16
#: Held-out labelled sequences the demo calibrates its ensemble on.
CALIBRATION_SEQUENCES = 2000


def truth_table(truth) -> pd.DataFrame:
    """True global effects as a table with columns exposure, outcome, true_effect.

    Parameters
    ----------
    truth : DataFrame, mapping or sequence
        ``simulate.demo_truth()``: a table with exposure/outcome and an effect column
        (``true_effect``, ``effect`` or ``estimate``), a mapping ``{(exposure, outcome): effect}``,
        or rows ``(exposure, outcome, effect)``.

    Returns
    -------
    DataFrame
    """
    if isinstance(truth, pd.DataFrame):
        col = next((c for c in ("true_effect", "effect", "estimate", "value") if c in truth), None)
        if col is None or not {"exposure", "outcome"} <= set(truth.columns):
            raise DeepMRInputError(
                "truth table needs columns exposure, outcome and true_effect; got "
                f"{', '.join(map(str, truth.columns))}"
            )
        df = truth[["exposure", "outcome", col]].rename(columns={col: "true_effect"})
    elif isinstance(truth, dict):
        df = pd.DataFrame(
            [(e, o, v) for (e, o), v in truth.items()],
            columns=["exposure", "outcome", "true_effect"],
        )
    else:
        df = pd.DataFrame(list(truth), columns=["exposure", "outcome", "true_effect"])
    return df.astype({"exposure": str, "outcome": str, "true_effect": float}).reset_index(drop=True)


def _weights_identity() -> list[dict]:
    files = sorted(p for p in DEMO_DATA.glob("*") if p.is_file())
    return [
        {"path": f"deepmr_kipoi/data/demo/{p.name}", "md5": hashlib.md5(p.read_bytes()).hexdigest()}
        for p in files
    ]


def run_demo(
    out: str | os.PathLike = "deepmr_demo",
    *,
    n_sequences: int | None = None,
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
) -> pipeline.DeepMRResult:
    """Run the embedded demo and write its results folder.

    Parameters
    ----------
    out : path-like
        Results folder (default ``./deepmr_demo``).
    n_sequences : int, optional
        Number of demo reference sequences (default 16; fewer for a quick check). The true
        effects are those of the same sequences (``simulate.demo_truth(n, seed)``).
    seed : int
        Seed of the demo sequences and of the bootstraps (the model is fixed).
    progress : bool
        Progress bar.
    force : bool
        Replace an earlier demo run of other settings in ``out``.

    Returns
    -------
    DeepMRResult
        Its report's headline compares estimated with true global effects.

    Notes
    -----
    The reference sequences are written to ``out/inputs/demo_sequences_<md5>.fa`` and the model is named
    by its factory, so ``deepmr run --config out/config.yaml`` repeats the run.
    """
    from deepmr_kipoi import simulate

    if n_sequences is not None and int(n_sequences) < 1:
        raise DeepMRInputError(f"--n-sequences must be >= 1, got {n_sequences}")
    n = DEFAULT_N_SEQUENCES if n_sequences is None else int(n_sequences)
    model = simulate.load_demo_model()
    ids, onehot = simulate.demo_sequences(n=n, seed=seed)
    truth = truth_table(simulate.demo_truth(n=n, seed=seed))
    out = Path(out)
    check_out_dir(out)
    fasta, table, added = _write_inputs(out, ids, onehot, seed)
    names = set(model.feature_names)
    features = [f for f in dict.fromkeys([*truth["exposure"], *truth["outcome"]]) if f in names]
    config = pipeline.RunConfig(
        model=DEMO_FACTORY,
        fasta=str(fasta),
        exposures=tuple(features),
        outcomes=tuple(features),
        methods=("ivw", "egger"),
        calibration_table=str(table),
        calibration_method="sigma",
        aleatoric_variance=1.0,
        seed=seed,
        chunk_size=8,
        out=str(out),
        progress=progress,
        force=force,
    )
    identity = {
        "name": DEMO_FACTORY,
        "source": "deepmr_kipoi (embedded demo)",
        "weights": _weights_identity(),
        "n_samples": int(model.n_samples),
        "n_features": len(model.feature_names),
        "type": type(model).__name__,
    }
    try:
        return pipeline.run(config, model=model, identity=identity, truth=truth)
    except DeepMRInputError:
        remove_created(out, False, added)
        raise


def _write_inputs(out: Path, ids, onehot, seed: int) -> tuple[Path, Path, list[Path]]:
    """The demo's reference sequences (FASTA) and labelled calibration table under
    ``out/inputs``: ``(fasta, table, paths this call added)``.

    Both are named by their content, so an earlier demo run's input is never rewritten, and
    written only by this call: a refused run removes what it added.
    """
    from deepmr_kipoi import simulate

    text = "".join(f">{i}\n{s}\n" for i, s in zip(ids, sequences.decode(onehot)))
    fasta = out / "inputs" / f"demo_sequences_{hashlib.md5(text.encode()).hexdigest()[:10]}.fa"
    # held-out labelled sequences calibrate the ensemble (sigma scaling without the labels'
    # Poisson noise, about 1 on the Anscombe scale), as a user would with their own labels
    labels = simulate.demo_calibration_data(n=CALIBRATION_SEQUENCES, seed=seed).to_csv(
        sep="\t", index=False
    )
    table = out / "inputs" / f"demo_labels_{hashlib.md5(labels.encode()).hexdigest()[:10]}.tsv"
    added = [p for p in (out, out / "inputs", fasta, table) if not p.exists()]
    fasta.parent.mkdir(parents=True, exist_ok=True)
    if fasta in added:
        results.write_text(fasta, text)
    if table in added:
        results.write_text(table, labels)
    return fasta, table, added


def headline(result: pipeline.DeepMRResult) -> str:
    """The run's verdict headline with the known truth beside each claim (plain text).

    Parameters
    ----------
    result : DeepMRResult
        A run given ``truth`` (its ``run_info["truth"]``), such as the demo's.

    Returns
    -------
    str
        One line per claim, the pairs not claimed by reason, and how the claims meet the truth.
    """
    from deepmr_kipoi.report import headline as summary

    truth = pd.DataFrame(result.run_info["truth"])
    return "\n".join(summary.build_headline(result.global_effects, truth).lines())
