"""SpliceAI (Jaganathan et al., Cell 2019) as a Deep MR model: a published, trained 5-model ensemble.

The weights come from the ``spliceai`` wheel on PyPI, fetched at run time with pip (never committed)
and cached (default ``~/.cache/deepmr_kipoi/spliceai``; override with ``DEEPMR_SPLICEAI_CACHE`` or
``cache_dir=``). The wheel is pinned by version and SHA-256. Licence: the package code is GPLv3;
the SpliceAI README states that the trained models (``spliceai/models``) are CC BY-NC 4.0, for
academic and non-commercial use only.

SpliceAI-10k maps a one-hot sequence of length ``L + 10000`` (ACGT order, N = all-zero column) to
per-position probabilities ``(L, 3)`` of (neither, acceptor, donor) for the central ``L`` bases.
For one exon the features here are:

* ``acceptor``: the acceptor probability at the exon's first base,
* ``donor``: the donor probability at the exon's last base,

on the logit scale by default (probabilities of strong sites sit near 1, where effects on the
probability scale are squashed). The input is the exon with whatever flanking sequence is given;
the 5,000 bases of context the network needs on each side of the two sites are filled with N beyond
the given sequence, as SpliceAI's own tools do at sequence ends. Only the stretch of input that can
reach the two sites (``donor - acceptor + 10001`` bases) is fed to the network.

Registered adapter ``SpliceAI/HBB-exon2``: human beta-globin exon 2 in ``HBB_GRCh38.fa`` (next to
this file). Other exons: :func:`build_model` with their :class:`Exon`.
"""

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deepmr_kipoi import registry
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive import DeepEnsemble, from_keras

logger = logging.getLogger(__name__)

SPLICEAI_VERSION = "1.3.1"
WHEEL_NAME = f"spliceai-{SPLICEAI_VERSION}-py2.py3-none-any.whl"
WHEEL_SHA256 = "63c633b8de6803d4ffb613e6ef62f1a896fec9fc13245c0f000ff7adea279776"
MODEL_FILES = tuple(f"spliceai{k}.h5" for k in range(1, 6))
#: Bases of context SpliceAI-10k needs on each side of a predicted position.
CONTEXT = 5000
HERE = Path(__file__).resolve().parent
HBB_FASTA = HERE / "HBB_GRCh38.fa"


class WeightsUnavailable(RuntimeError):
    """The spliceai wheel could not be downloaded or did not match its pinned hash."""


@dataclass(frozen=True)
class Exon:
    """One exon inside an input sequence (0-based positions in the sequence, transcript strand).

    Attributes
    ----------
    name : str
    length : int
        Length L of the input sequences.
    acceptor : int
        Index of the exon's first base (the base after the intron's AG).
    donor : int
        Index of the exon's last base (the base before the intron's GT).
    """

    name: str
    length: int
    acceptor: int
    donor: int

    def __post_init__(self):
        if not 0 <= self.acceptor < self.donor < self.length:
            raise DeepMRInputError(
                f"exon {self.name}: need 0 <= acceptor < donor < length, got {self.acceptor}, "
                f"{self.donor}, {self.length}; give 0-based indexes inside the sequence"
            )


#: HBB exon 2 in HBB_GRCh38.fa: GRCh38 chr11:5,226,577-5,226,799 (minus strand), gene positions
#: 273-495 of the 1,608-bp gene sequence NC_000011.10:c5227071-5225464.
HBB_EXON2 = Exon("HBB exon 2", length=1608, acceptor=272, donor=494)


def default_cache() -> Path:
    """The weights cache folder: ``$DEEPMR_SPLICEAI_CACHE`` or ``~/.cache/deepmr_kipoi/spliceai``."""
    env = os.environ.get("DEEPMR_SPLICEAI_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "deepmr_kipoi" / "spliceai"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_weights(cache_dir: str | os.PathLike | None = None, timeout: float = 300.0) -> list[Path]:
    """The five SpliceAI ``.h5`` files, downloaded once with ``pip download`` and cached.

    Parameters
    ----------
    cache_dir : path, optional
        Default :func:`default_cache`.
    timeout : float
        Seconds allowed for ``pip download``.

    Returns
    -------
    list of Path, length 5
        ``spliceai1.h5`` ... ``spliceai5.h5``.

    Raises
    ------
    WeightsUnavailable
        When pip cannot fetch the pinned wheel (no network, registry down) or its hash differs.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    paths = [cache / SPLICEAI_VERSION / name for name in MODEL_FILES]
    if all(p.is_file() for p in paths):
        return paths
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            f"spliceai=={SPLICEAI_VERSION}",
            "-d",
            tmp,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise WeightsUnavailable(f"pip download of spliceai failed: {err}") from None
        wheel = Path(tmp) / WHEEL_NAME
        if proc.returncode != 0 or not wheel.is_file():
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise WeightsUnavailable(
                f"pip download of spliceai=={SPLICEAI_VERSION} failed: {last[0]}"
            )
        digest = _sha256(wheel)
        if digest != WHEEL_SHA256:
            raise WeightsUnavailable(f"{WHEEL_NAME} has SHA-256 {digest}, expected {WHEEL_SHA256}")
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for path in paths:
                # write then rename, so an interrupted extraction never leaves a truncated cache file
                part = path.with_suffix(".part")
                part.write_bytes(zf.read(f"spliceai/models/{path.name}"))
                part.replace(path)
    logger.info("SpliceAI %s weights cached in %s", SPLICEAI_VERSION, paths[0].parent)
    return paths


def _exon_ends_model(base, exon: Exon):
    """A tf_keras model ``(N, L, 4) -> (N, 2)``: [acceptor prob at exon start, donor prob at exon end].

    It crops the input to the bases that reach the two sites, pads with N (zeros) where the
    sequence ends within ``CONTEXT`` bases of a site, and runs ``base`` on that stretch.
    """
    import tensorflow as tf
    import tf_keras

    lo = max(0, exon.acceptor - CONTEXT)
    hi = min(exon.length, exon.donor + CONTEXT + 1)
    pad = [[0, 0], [CONTEXT - (exon.acceptor - lo), CONTEXT + 1 - (hi - exon.donor)], [0, 0]]

    inputs = tf_keras.Input((exon.length, 4))
    window = tf_keras.layers.Lambda(lambda x: tf.pad(x[:, lo:hi], pad), name="crop_pad")(inputs)
    probs = base(window)  # (N, donor - acceptor + 1, 3): outputs from the acceptor to the donor
    ends = tf_keras.layers.Lambda(
        lambda p: tf.stack([p[:, 0, 1], p[:, -1, 2]], axis=1), name="exon_ends"
    )(probs)
    return tf_keras.Model(inputs, ends, name=f"spliceai_{base.name}")


def build_model(
    exon: Exon = HBB_EXON2,
    weights: list[str | os.PathLike] | None = None,
    transform: str = "logit",
    cache_dir: str | os.PathLike | None = None,
) -> DeepEnsemble:
    """The SpliceAI ensemble as a :class:`~deepmr_kipoi.predictive.DeepEnsemble` for one exon.

    Parameters
    ----------
    exon : Exon
        Where the exon sits in the input sequences.
    weights : list of path, optional
        The ``.h5`` files (default :func:`fetch_weights`); one member each.
    transform : {"logit", "identity"}
        Output scale of both features.
    cache_dir : path, optional
        Passed to :func:`fetch_weights`.

    Returns
    -------
    DeepEnsemble
        ``predict_samples((N, L, 4) ACGT) -> (S, N, 2)`` with features ``("acceptor", "donor")``;
        S = number of weight files (5).
    """
    import tf_keras

    if transform not in ("logit", "identity"):
        raise DeepMRInputError(f"transform must be 'logit' or 'identity', got {transform!r}")
    files = [Path(w) for w in weights] if weights else fetch_weights(cache_dir)
    members = []
    for path in files:
        base = tf_keras.models.load_model(path, compile=False)
        members.append(
            from_keras(
                _exon_ends_model(base, exon),
                feature_names=["acceptor", "donor"],
                layout="NLC",
                alphabet="ACGT",
                transforms=transform,
                sequence_length=exon.length,
            )
        )
    return DeepEnsemble(members)


@registry.register_adapter(
    "SpliceAI/HBB-exon2",
    description="SpliceAI 5-model ensemble (PyPI spliceai 1.3.1): acceptor/donor of HBB exon 2",
)
def load_spliceai_hbb_exon2(request):
    """Adapter: :func:`build_model` for HBB exon 2 (sequences: ``HBB_GRCh38.fa``)."""
    if request.uncertainty not in (None, "ensemble"):
        raise DeepMRInputError(
            f"SpliceAI is a 5-model deep ensemble without dropout; drop --uncertainty "
            f"{request.uncertainty}"
        )
    return build_model(HBB_EXON2, weights=list(request.weight_files or ()) or None)


def hbb_exon2():
    """Factory for ``--model examples/real_model/spliceai_adapter.py:hbb_exon2``."""
    return build_model(HBB_EXON2)
