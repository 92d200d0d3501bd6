"""Deep-ensemble training with early stopping (torch, imported lazily).

Every member has its own seed: its own initialisation, minibatch order and dropout draws (torch's
global RNG is forked and restored, so training leaves no trace in the caller's RNG state). All
members share one train/validation split (drawn from ``TrainConfig.seed``); each stops on its own
validation loss and is restored to its best epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.settings import option_field
from deepmr_kipoi.simulate.model import ModelConfig, build_cnn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes
    ----------
    n_members : int
        Ensemble size (member ``m`` uses seed ``seed * 1000 + m + 1``).
    max_epochs : int
        Upper bound on epochs per member.
    patience : int
        Epochs without improvement of the validation loss before stopping.
    batch_size : int
    learning_rate : float
        Adam step size.
    weight_decay : float
        Adam L2 penalty.
    val_fraction : float
        Fraction of the training sequences held out for early stopping.
    seed : int
        Seed of the split and base of the member seeds.
    threads : int
        ``torch.set_num_threads`` during training and prediction (restored afterwards).
    bootstrap : bool
        Train each member on its own bootstrap resample (with replacement, same size) of the
        training split, drawn from the member's seed (bagging). Seed-only members share the
        training data's sampling error; bootstrap members spread over it too, so the ensemble's
        disagreement also reflects how much the fit depends on the particular training sample.
        The early-stopping split is the same for every member.
    """

    n_members: int = option_field(
        5, "--members", "ensemble members (default {default})", type=int, metavar="MEMBERS"
    )
    max_epochs: int = option_field(
        12, "--max-epochs", "epoch limit per member (default {default})", type=int
    )
    patience: int = 3
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.15
    seed: int = 0
    threads: int = option_field(1, "--threads", "torch threads (default {default})", type=int)
    bootstrap: bool = option_field(
        False,
        "--bootstrap",
        "train each ensemble member on a bootstrap resample of the training "
        "sequences (bagging) instead of seeds alone",
        action="store_true",
    )

    def __post_init__(self):
        # ensemble standard errors need at least two members
        validation.positive_int(self.n_members, "n_members", minimum=2)
        validation.finite_float(
            self.val_fraction, "val_fraction", low=0.0, high=1.0, low_open=True, high_open=True
        )
        for name in ("max_epochs", "patience", "batch_size"):
            validation.positive_int(getattr(self, name), name)

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MemberHistory:
    """Training record of one member.

    Attributes
    ----------
    seed : int
    train_loss, val_loss : tuple of float
        Mean squared error (standardised targets) per epoch.
    best_epoch : int
        1-based epoch whose weights were kept.
    seconds : float
    """

    seed: int
    train_loss: tuple
    val_loss: tuple
    best_epoch: int
    seconds: float


@dataclass(frozen=True)
class TrainedEnsemble:
    """Trained members (torch modules in eval mode) and their records.

    Attributes
    ----------
    members : tuple of torch.nn.Module
    histories : tuple of MemberHistory
    model_config : ModelConfig
    train_config : TrainConfig
    feature_names : tuple of str
    """

    members: tuple
    histories: tuple
    model_config: ModelConfig
    train_config: TrainConfig
    feature_names: tuple

    def to_predictive(self):
        """The ensemble as a :class:`deepmr_kipoi.predictive.DeepEnsemble` (S = n_members)."""
        return to_predictive(self.members, self.feature_names, self.model_config.sequence_length)

    def state_dicts(self) -> list:
        """Member state dicts (CPU tensors)."""
        return [
            {k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in self.members
        ]


def to_predictive(members: Sequence, feature_names: Sequence[str], sequence_length: int | None):
    """Wrap torch modules as a DeepEnsemble (members put in eval mode).

    Parameters
    ----------
    members : sequence of torch.nn.Module
        Modules taking ``(N, 4, L)`` ACGT one-hot.
    feature_names : sequence of str, length F
    sequence_length : int or None

    Returns
    -------
    deepmr_kipoi.predictive.DeepEnsemble
    """
    from deepmr_kipoi.predictive import DeepEnsemble, from_torch

    wrapped = []
    for m in members:
        m.eval()
        wrapped.append(
            from_torch(
                m,
                feature_names=list(feature_names),
                layout="NCL",
                alphabet="ACGT",
                sequence_length=sequence_length,
            )
        )
    return DeepEnsemble(wrapped)


def _member_seed(config: TrainConfig, m: int) -> int:
    return int(config.seed) * 1000 + m + 1


def train_ensemble(
    onehot: np.ndarray,
    labels: np.ndarray,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    feature_names: Sequence[str] = ("exposure", "outcome"),
    progress: bool = False,
) -> TrainedEnsemble:
    """Train ``n_members`` CNNs on the same data with different seeds, early stopping each.

    Parameters
    ----------
    onehot : ndarray, shape (N, L, 4)
        ACGT one-hot training sequences.
    labels : ndarray, shape (N, F)
        Targets (Anscombe-transformed counts).
    model_config : ModelConfig, optional
    train_config : TrainConfig, optional
    feature_names : sequence of str, length F
    progress : bool
        Log one line per member.

    Returns
    -------
    TrainedEnsemble
    """
    import torch

    mc = model_config or ModelConfig(sequence_length=onehot.shape[1], n_outputs=labels.shape[1])
    tc = train_config or TrainConfig()
    x = np.asarray(onehot, dtype=np.float32)
    y = np.asarray(labels, dtype=np.float32)
    _check_training_data(x, y, mc, feature_names)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(tc.threads)
    try:
        data = _TrainingSplit.draw(x, y, tc)
        members, histories = [], []
        for m in range(tc.n_members):
            seed = _member_seed(tc, m)
            rows = bootstrap_rows(len(data.y_tr), seed) if tc.bootstrap else None
            module, hist = _train_one(data.resampled(rows), mc, tc, seed)
            members.append(module)
            histories.append(hist)
            if progress:
                logger.info(
                    "member %d/%d: best epoch %d, val MSE %.4f, %.1fs",
                    m + 1,
                    tc.n_members,
                    hist.best_epoch,
                    min(hist.val_loss),
                    hist.seconds,
                )
    finally:
        torch.set_num_threads(previous_threads)
    return TrainedEnsemble(
        members=tuple(members),
        histories=tuple(histories),
        model_config=mc,
        train_config=tc,
        feature_names=tuple(feature_names),
    )


def _check_training_data(x: np.ndarray, y: np.ndarray, mc: ModelConfig, feature_names) -> None:
    """Refuse sequences, labels and names whose shapes do not fit one another or the network."""
    if x.ndim != 3 or x.shape[2] != 4:
        raise DeepMRInputError(
            f"onehot must have shape (N, L, 4), got {x.shape}; pass one-hot sequences"
        )
    if y.ndim != 2 or y.shape[0] != x.shape[0] or y.shape[1] != mc.n_outputs:
        raise DeepMRInputError(
            f"labels must have shape (N, {mc.n_outputs}) with N = {x.shape[0]} as onehot, got {y.shape}; "
            "give one row of labels per sequence"
        )
    if len(feature_names) != mc.n_outputs:
        raise DeepMRInputError(
            f"need {mc.n_outputs} feature names (one per label column), got {len(feature_names)}"
        )


@dataclass(frozen=True)
class _TrainingSplit:
    """The training and early-stopping rows as torch tensors (sequences NCL, labels standardized
    by the training rows' ``mean`` and ``scale``)."""

    x_tr: object
    y_tr: object
    x_val: object
    y_val: object
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def draw(cls, x: np.ndarray, y: np.ndarray, tc: TrainConfig) -> _TrainingSplit:
        """The split of ``tc.seed``, shared by every member."""
        import torch

        rng = np.random.default_rng(tc.seed)
        perm = rng.permutation(x.shape[0])
        n_val = max(1, int(round(tc.val_fraction * x.shape[0])))
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        mean = y[tr_idx].mean(axis=0)
        scale = y[tr_idx].std(axis=0)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))
        yt = torch.from_numpy((y - mean) / scale)
        return cls(xt[tr_idx], yt[tr_idx], xt[val_idx], yt[val_idx], mean, scale)

    def resampled(self, rows) -> _TrainingSplit:
        """The split with the training rows ``rows`` (a bootstrap resample; None: as is)."""
        if rows is None:
            return self
        return replace(self, x_tr=self.x_tr[rows], y_tr=self.y_tr[rows])


def bootstrap_rows(n: int, seed: int):
    """Row indices of one member's bootstrap resample of ``n`` training rows (torch tensor, (n,)).

    Parameters
    ----------
    n : int
    seed : int
        The member's seed (the resample differs between members, and repeats with the seed).

    Returns
    -------
    torch.Tensor, shape (n,), int64
    """
    import torch

    rng = np.random.default_rng([seed, 7])
    return torch.from_numpy(rng.integers(0, n, size=n))


def _train_one(data: _TrainingSplit, mc: ModelConfig, tc: TrainConfig, seed: int):
    """One member trained from its seed with early stopping, restored to its best epoch."""
    import torch

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_cnn(mc)
        module.target_mean.copy_(torch.from_numpy(np.asarray(data.mean, dtype=np.float32)))
        module.target_scale.copy_(torch.from_numpy(np.asarray(data.scale, dtype=np.float32)))
        opt = torch.optim.Adam(
            module.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay
        )
        gen = torch.Generator().manual_seed(seed)
        train_hist, val_hist, best_epoch = early_stopped(
            module,
            lambda: _train_epoch(module, opt, data, tc.batch_size, gen),
            lambda: _validation_loss(module, data),
            tc.max_epochs,
            tc.patience,
        )
    return module, MemberHistory(
        seed=seed,
        train_loss=tuple(train_hist),
        val_loss=tuple(val_hist),
        best_epoch=best_epoch,
        seconds=time.perf_counter() - t0,
    )


def early_stopped(module, train_epoch, validation_loss, max_epochs: int, patience: int):
    """Train ``module`` epoch by epoch until its validation loss has not improved (by more than
    1e-6) for ``patience`` epochs, then restore its best epoch's state and put it in eval mode.

    Parameters
    ----------
    module : torch.nn.Module
    train_epoch : callable () -> object
        One training pass; what it returns is kept per epoch.
    validation_loss : callable () -> float
    max_epochs, patience : int

    Returns
    -------
    (list, list of float, int)
        ``train_epoch``'s results and the validation losses per epoch run, and the best epoch.
    """
    best, best_state, best_epoch, bad = np.inf, None, 0, 0
    train_hist, val_hist = [], []
    for epoch in range(1, max_epochs + 1):
        train_hist.append(train_epoch())
        val = validation_loss()
        val_hist.append(val)
        if val < best - 1e-6:
            best, best_epoch, bad = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    return train_hist, val_hist, best_epoch


def _train_epoch(module, opt, data: _TrainingSplit, batch_size: int, gen) -> float:
    """One pass over the training rows in the order ``gen`` draws; the mean training loss."""
    import torch

    module.train()
    n = data.x_tr.shape[0]
    order = torch.randperm(n, generator=gen)
    total = 0.0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if idx.numel() < 2:  # BatchNorm needs more than one sample in training mode
            continue
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(module.standardized(data.x_tr[idx]), data.y_tr[idx])
        loss.backward()
        opt.step()
        total += loss.item() * idx.numel()
    return total / n


def _validation_loss(module, data: _TrainingSplit) -> float:
    """The early-stopping loss: MSE of the standardized predictions on the validation rows."""
    import torch

    module.eval()
    with torch.no_grad():
        return float(
            torch.nn.functional.mse_loss(
                _batched(module.standardized, data.x_val, 2048), data.y_val
            )
        )


def _batched(fn, x, batch: int):
    import torch

    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)], dim=0)
