"""Adapter for the zoo's ``BPNet-OSKN`` (Avsec et al. 2021): ChIP-nexus profiles of Oct4, Sox2, Nanog
and Klf4 in mouse ES cells from 1000 bp.

The zoo model is a Keras 2.2 / TensorFlow 1.14 model (``bpnet.model.h5``) that current TensorFlow cannot
run. This adapter re-implements the network in PyTorch (:mod:`model_adapters.bpnet_torch`) and reads the
h5 weights by layer name:

* body: ``conv1d_1`` (kernel 25, ReLU, 'same'), then ``conv1d_2`` ... ``conv1d_10``: 9 residual dilated
  convolutions (kernel 3, dilation 2, 4, ..., 512, ReLU, 'same'; output added to their input);
* per task, in the order Oct4, Sox2, Nanog, Klf4: a profile head ``conv2d_transpose_k`` (kernel
  (25, 1), 'same', 2 strands) and a counts head ``dense_(2k-1)`` (global average pooling of the body
  output, then a 2-unit dense layer: log total counts per strand).

The bias ("control track") inputs of the Keras model are set to zero, as the Kipoi model does
(``neutral_bias_inputs``); their layers have no bias term, so they contribute exactly nothing and are
not read. Dilation rates are read from the h5's ``model_config`` when it has one.

Features: the counts heads averaged over strands, one per TF ("Oct4", "Sox2", "Nanog", "Klf4") -- the
log total-count scalars the Deep MR paper uses. BPNet has no dropout, so uncertainty comes from an
ensemble of several weight files (``weight_files=[...]``); with the single zoo file the model is
deterministic.
"""

from __future__ import annotations

from deepmr_kipoi.adapters import LoadRequest, with_uncertainty
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.registry import register_adapter
from model_adapters.bpnet_weights import TASKS, BPNetLayerNames, BPNetWeights, read_bpnet_h5

__all__ = ["TASKS", "BPNetLayerNames", "BPNetWeights", "load_bpnet_oskn", "read_bpnet_h5"]


def _tasks(request: LoadRequest) -> tuple[str, ...]:
    if request.weight_files is not None:
        return TASKS
    names = request.description.output_names
    return tuple(names) if names else TASKS


@register_adapter(
    "BPNet-OSKN",
    description="BPNet Oct4/Sox2/Nanog/Klf4 ChIP-nexus (PyTorch port of the zoo's Keras h5); features "
    "= log total counts, strand mean; ensemble over weight_files",
    patterns=("BPNet-OSKN",),
)
def load_bpnet_oskn(request: LoadRequest):
    """Load BPNet-OSKN from its h5 weight file(s) as a PyTorch model; one ensemble member per file."""
    from deepmr_kipoi.predictive import from_torch
    from model_adapters.bpnet_torch import BPNet

    files = request.model_files("model_file")
    tasks = _tasks(request)
    weights = [read_bpnet_h5(path, tasks) for path in files]
    lengths = {w.sequence_length for w in weights}
    if request.weight_files is None:
        length = request.description.sequence_length
    elif len(lengths) == 1:
        length = lengths.pop()
    else:
        raise DeepMRInputError(
            f"the weight files were trained on different input lengths {sorted(lengths, key=str)}"
        )
    members = [
        from_torch(
            BPNet(w),
            feature_names=list(tasks),
            layout="NLC",
            alphabet=request.alphabet or "ACGT",
            sequence_length=length,
        )
        for w in weights
    ]
    return with_uncertainty(members, request, has_dropout=False)
