"""Training of the multi-task BPNet ensemble (torch imported lazily).

Loss per batch: the multinomial profile loss (:func:`network.profile_nll`) divided by the mean
number of reads per profile of the training split, plus ``count_weight`` times the mean squared
error of the counts heads on ``log(1 + reads)`` per task and strand. Members differ by seed only
(initialisation and minibatch order); all share one early-stopping split and stop on the
validation counts MSE, restored to their best epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields

import numpy as np

from deepmr_kipoi.validation import positive_int

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BPNetTrainConfig:
    """Architecture and training settings.

    Attributes
    ----------
    n_members : int
        Ensemble size (member ``m`` uses seed ``seed * 1000 + m + 1``).
    max_epochs, patience, batch_size : int
    learning_rate : float
        Adam step size.
    count_weight : float
        Weight of the counts MSE against the (read-normalised) profile loss.
    filters, conv1_kernel, n_dilated, profile_kernel : int
        Network shape (:class:`network.MultiTaskBPNet`).
    val_fraction : float
    seed : int
    threads : int
        ``torch.set_num_threads`` during training (restored afterwards).
    """

    n_members: int = 5
    max_epochs: int = 15
    patience: int = 3
    batch_size: int = 64
    learning_rate: float = 4e-3
    count_weight: float = 2.0
    filters: int = 16
    conv1_kernel: int = 25
    n_dilated: int = 9
    profile_kernel: int = 25
    val_fraction: float = 0.15
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        from deepmr_kipoi.errors import DeepMRInputError

        for name in ("n_members", "max_epochs", "patience", "batch_size", "filters", "threads"):
            positive_int(getattr(self, name), name)
        if self.n_members < 2:
            raise DeepMRInputError(f"n_members must be >= 2 for ensemble SEs, got {self.n_members}")

    def network_kwargs(self, n_tasks: int) -> dict:
        """Constructor arguments of :class:`network.MultiTaskBPNet`."""
        return {
            "n_tasks": n_tasks,
            "filters": self.filters,
            "conv1_kernel": self.conv1_kernel,
            "n_dilated": self.n_dilated,
            "profile_kernel": self.profile_kernel,
            "n_strands": 2,
        }

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class BPNetMemberRecord:
    """Training record of one member.

    Attributes
    ----------
    seed : int
    val_count_mse : tuple of float
        Validation counts MSE per epoch.
    best_epoch : int
    seconds : float
    """

    seed: int
    val_count_mse: tuple
    best_epoch: int
    seconds: float


def train_bpnet_ensemble(
    onehot: np.ndarray, counts: np.ndarray, profiles: np.ndarray, config: BPNetTrainConfig
) -> tuple[list, list]:
    """Train ``config.n_members`` multi-task BPNets.

    Parameters
    ----------
    onehot : ndarray, shape (N, L, 4)
    counts : ndarray, shape (N, T, 2)
        Total reads per task and strand.
    profiles : ndarray, shape (N, T, L, 2)
    config : BPNetTrainConfig

    Returns
    -------
    members : list of MultiTaskBPNet
        In eval mode.
    records : list of BPNetMemberRecord
    """
    import torch

    data = _BPNetData.draw(onehot, counts, profiles, config)
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    members, records = [], []
    try:
        for m in range(config.n_members):
            net, rec = _train_member(data, config, config.seed * 1000 + m + 1, counts.shape[1])
            logger.info(
                "BPNet member %d/%d: best epoch %d, val counts MSE %.4f, %.0f s",
                m + 1,
                config.n_members,
                rec.best_epoch,
                min(rec.val_count_mse),
                rec.seconds,
            )
            members.append(net)
            records.append(rec)
    finally:
        torch.set_num_threads(previous)
    return members, records


@dataclass(frozen=True)
class _BPNetData:
    """Training tensors (sequences, log1p counts, profiles), the train/validation rows of
    ``config.seed`` shared by every member, and the mean read count that scales the profile loss."""

    x: object
    y: object
    p: object
    tr: np.ndarray
    val: np.ndarray
    read_scale: float

    @classmethod
    def draw(cls, onehot, counts, profiles, config: BPNetTrainConfig) -> _BPNetData:
        import torch

        n = onehot.shape[0]
        rng = np.random.default_rng(config.seed)
        perm = rng.permutation(n)
        n_val = max(1, int(round(config.val_fraction * n)))
        val, tr = perm[:n_val], perm[n_val:]
        return cls(
            x=torch.from_numpy(np.asarray(onehot, dtype=np.float32)),
            y=torch.from_numpy(np.log1p(np.asarray(counts, dtype=np.float32))),
            p=torch.from_numpy(np.asarray(profiles, dtype=np.float32)),
            tr=tr,
            val=val,
            read_scale=float(np.asarray(counts)[tr].mean()) or 1.0,
        )


def _train_member(data: _BPNetData, config: BPNetTrainConfig, seed: int, n_tasks: int):
    """One member trained from ``seed`` with early stopping on the validation counts MSE,
    restored to its best epoch: ``(net, BPNetMemberRecord)``."""
    import torch

    from deepmr_kipoi.simulate.bpnet.network import MultiTaskBPNet
    from deepmr_kipoi.simulate.train import early_stopped

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MultiTaskBPNet(**config.network_kwargs(n_tasks))
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
        gen = torch.Generator().manual_seed(seed)
        _, hist, best_epoch = early_stopped(
            net,
            lambda: _train_epoch(net, opt, data, config, gen),
            lambda: _validation_count_mse(net, data),
            config.max_epochs,
            config.patience,
        )
    rec = BPNetMemberRecord(
        seed=seed,
        val_count_mse=tuple(hist),
        best_epoch=best_epoch,
        seconds=time.perf_counter() - t0,
    )
    return net, rec


def _train_epoch(net, opt, data: _BPNetData, config: BPNetTrainConfig, gen) -> None:
    """One pass over the training rows in the order ``gen`` draws (profile NLL per read plus the
    weighted counts MSE)."""
    import torch

    from deepmr_kipoi.simulate.bpnet.network import profile_nll

    net.train()
    order = torch.from_numpy(data.tr)[torch.randperm(len(data.tr), generator=gen)]
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        log_counts, logits = net.heads(data.x[idx])
        loss = profile_nll(
            logits, data.p[idx]
        ) / data.read_scale + config.count_weight * torch.mean((log_counts - data.y[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _validation_count_mse(net, data: _BPNetData) -> float:
    """MSE of the predicted log counts on the validation rows (batches of 512)."""
    import torch

    net.eval()
    val = data.val
    with torch.no_grad():
        return float(
            torch.cat(
                [
                    (
                        (net.heads(data.x[val[i : i + 512]])[0] - data.y[val[i : i + 512]]) ** 2
                    ).flatten()
                    for i in range(0, len(val), 512)
                ]
            ).mean()
        )
