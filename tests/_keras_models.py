"""Keras (tf_keras) networks of zoo families, built by the tests with random weights.

* :func:`deepstarr` -- DeepSTARR's structure (de Almeida et al. 2022): four blocks of ``Conv1D``
  (``padding="same"``), batch normalisation, ReLU and max pooling, a flatten, two dense blocks with
  batch normalisation and dropout, two ``Dense(1)`` heads (developmental, housekeeping);
* :func:`write_deepstarr_dir` -- it as a Kipoi ``KerasModel`` directory laid out like the zoo's
  ``DeepSTARR`` (architecture JSON + h5, one target of shape ``(2,)`` without labels, which Kipoi
  names nothing: its features read ``output0/0``, ``output0/1``).
"""

from __future__ import annotations

import os
import textwrap


def deepstarr(seed: int = 0, length: int = 249, scale: int = 1, dropout: float = 0.4):
    """DeepSTARR's layer structure and sizes (``scale`` divides the channel counts), input (L, 4)."""
    from benchmarks.zoo_architectures import deepstarr_keras

    return deepstarr_keras(seed=seed, length=length, scale=scale, dropout=dropout)


def write_deepstarr_dir(root, length: int = 249, scale: int = 4, seed: int = 0):
    """The zoo's ``DeepSTARR`` definition with :func:`deepstarr`; returns (directory, Keras model)."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    model = deepstarr(seed=seed, length=length, scale=scale)
    with open(os.path.join(root, "model.json"), "w") as f:
        f.write(model.to_json())
    model.save_weights(os.path.join(root, "weights.h5"))
    with open(os.path.join(root, "model.yaml"), "w") as f:
        f.write(
            textwrap.dedent(f"""
            defined_as: kipoi.model.KerasModel
            args:
              arch: model.json
              weights: weights.h5
            default_dataloader:
              defined_as: kipoiseq.dataloaders.SeqIntervalDl
              default_args:
                auto_resize_len: {length}
                alphabet: "ACGT"
            info:
              authors:
                - name: deepmr test
              doc: Narrow network with DeepSTARR's structure.
            schema:
              inputs:
                shape: ({length}, 4)
                doc: DNA sequence
              targets:
                shape: (2,)
                doc: Developmental and housekeeping enhancer activity
            """).lstrip()
        )
    return root, model
