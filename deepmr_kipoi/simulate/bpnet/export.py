"""Saving the trained BPNet ensemble: a Kipoi model directory, and the zoo's BPNet-OSKN h5 layout.

The Kipoi directory is a ``kipoi.model.PyTorchModel`` (``module_file`` = a copy of
:mod:`deepmr_kipoi.simulate.bpnet.network`), one state dict per member (``member_<m>.pth``; the
first is the model's own ``weights``), the task labels, and kipoiseq's ``SeqIntervalDl`` with the
sequence length as default dataloader. The ensemble is analysed as any Kipoi model with several
weight files: ``deepmr run --model DIR --weights DIR/member_*.pth``.

The h5 export writes Keras-layout weights under the zoo's layer names (``conv1d_1`` ...
``conv1d_10``, ``conv2d_transpose_k``, ``dense_(2k-1)``) with a ``model_config`` giving the input
length and dilation rates, so the registered ``BPNet-OSKN`` adapter reads it as it reads the zoo's
file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence

import numpy as np

MODULE_FILE = "bpnet_module.py"


def write_kipoi_model_dir(
    out_dir: str,
    members: Sequence,
    network_kwargs: dict,
    tasks: Sequence[str],
    sequence_length: int,
) -> list[str]:
    """Write the ensemble as a Kipoi PyTorchModel directory.

    Parameters
    ----------
    out_dir : str
        Created if missing.
    members : sequence of MultiTaskBPNet
    network_kwargs : dict
        Constructor arguments of the network.
    tasks : sequence of str, length T
    sequence_length : int

    Returns
    -------
    list of str
        The member weight files, in member order.
    """
    import torch

    from deepmr_kipoi.simulate.bpnet import network

    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(network.__file__, os.path.join(out_dir, MODULE_FILE))
    files = []
    for m, net in enumerate(members, start=1):
        path = os.path.join(out_dir, f"member_{m}.pth")
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)
        files.append(path)
    with open(os.path.join(out_dir, "labels.txt"), "w") as fh:
        fh.write("\n".join(tasks) + "\n")
    kwargs = "\n".join(f"    {k}: {v}" for k, v in network_kwargs.items())
    yaml = f"""defined_as: kipoi.model.PyTorchModel
args:
  module_file: {MODULE_FILE}
  module_class: MultiTaskBPNet
  module_kwargs:
{kwargs}
  weights: member_1.pth
default_dataloader:
  defined_as: kipoiseq.dataloaders.SeqIntervalDl
  default_args:
    auto_resize_len: {sequence_length}
    alphabet_axis: 1
    dtype: np.float32
info:
  authors:
    - name: deepmr_kipoi simulate --experiment bpnet
  doc: >-
    Multi-task BPNet trained on simulated ChIP-nexus data of {", ".join(tasks)}; output = log(1 +
    reads) per task, strand mean. An ensemble of {len(files)} members (member_*.pth): load them
    with --weights.
dependencies:
  pip:
    - torch
schema:
  inputs:
    name: seq
    special_type: DNASeq
    shape: ({sequence_length}, 4)
    doc: one-hot DNA, ACGT
  targets:
    name: log_counts
    shape: ({len(tasks)}, )
    doc: log(1 + total reads) per task (mean of the two strands)
    column_labels: labels.txt
"""
    with open(os.path.join(out_dir, "model.yaml"), "w") as fh:
        fh.write(yaml)
    return files


def _keras_layer(root, name: str, arrays: dict[str, np.ndarray]) -> None:
    group = root.create_group(name)
    names = [f"{name}/{key}:0" for key in arrays]
    group.attrs["weight_names"] = np.array([n.encode() for n in names])
    for full, value in zip(names, arrays.values()):
        group.create_dataset(full, data=np.asarray(value, dtype=np.float32))


def export_bpnet_oskn_h5(net, path: str, sequence_length: int) -> str:
    """Write one member in the zoo BPNet-OSKN h5 layout (Keras kernels, zoo layer names).

    Parameters
    ----------
    net : MultiTaskBPNet
        Needs 9 dilated layers and 4 tasks, as the zoo model has.
    path : str
    sequence_length : int
        Input length recorded in the ``model_config``.

    Returns
    -------
    str
        ``path``.
    """
    import h5py

    from deepmr_kipoi.errors import DeepMRInputError

    if len(net.dilated) != 9 or len(net.counts) != 4:
        raise DeepMRInputError(
            "the BPNet-OSKN layout needs 9 dilated layers and 4 tasks; train with n_dilated=9"
        )

    def conv(c):  # torch (out, in, k) -> Keras (k, in, out)
        return {
            "kernel": c.weight.detach().numpy().transpose(2, 1, 0),
            "bias": c.bias.detach().numpy(),
        }

    layers = {"conv1d_1": conv(net.conv1)}
    config_layers = [
        {
            "class_name": "InputLayer",
            "config": {"name": "seq", "batch_input_shape": [None, sequence_length, 4]},
        }
    ]
    for i, (c, d) in enumerate(zip(net.dilated, net.dilations), start=2):
        layers[f"conv1d_{i}"] = conv(c)
        config_layers.append(
            {
                "class_name": "Conv1D",
                "config": {"name": f"conv1d_{i}", "dilation_rate": [d], "padding": "same"},
            }
        )
    for k, (prof, cnt) in enumerate(zip(net.profile, net.counts), start=1):
        w = prof.weight.detach().numpy()  # torch (in, out, k) -> Keras (k, 1, out, in)
        layers[f"conv2d_transpose_{k}"] = {
            "kernel": w.transpose(2, 1, 0)[:, None],
            "bias": prof.bias.detach().numpy(),
        }
        layers[f"dense_{2 * k - 1}"] = {
            "kernel": cnt.weight.detach().numpy().T,
            "bias": cnt.bias.detach().numpy(),
        }
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(
            {"class_name": "Model", "config": {"layers": config_layers}}
        )
        root = f.create_group("model_weights")
        for name, arrays in layers.items():
            _keras_layer(root, name, arrays)
    return path
