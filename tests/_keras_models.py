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

import numpy as np


def _randomize_batchnorm(model, seed: int) -> None:
    """Batch-norm statistics away from the identity, so that the layers are not no-ops."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                rng.normal(0, 0.1, beta.shape).astype(np.float32),
                rng.normal(0, 0.3, mean.shape).astype(np.float32),
                rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
            ])  # fmt: skip


def deepstarr(seed: int = 0, length: int = 249, scale: int = 1, dropout: float = 0.4):
    """DeepSTARR's layer structure and sizes (``scale`` divides the channel counts), input (L, 4)."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    kl = keras.layers
    inp = kl.Input((length, 4), name="seq")
    h = inp
    for i, (filters, kernel) in enumerate(((246, 7), (60, 3), (60, 5), (120, 3))):
        h = kl.Conv1D(max(filters // scale, 2), kernel, padding="same", name=f"Conv1D_{i}")(h)
        h = kl.BatchNormalization(name=f"bn_conv_{i}")(h)
        h = kl.Activation("relu", name=f"relu_conv_{i}")(h)
        h = kl.MaxPooling1D(2, name=f"pool_{i}")(h)
    h = kl.Flatten(name="flatten")(h)
    for i in range(2):
        h = kl.Dense(max(256 // scale, 2), name=f"Dense_{i}")(h)
        h = kl.BatchNormalization(name=f"bn_dense_{i}")(h)
        h = kl.Activation("relu", name=f"relu_dense_{i}")(h)
        h = kl.Dropout(dropout, name=f"drop_{i}")(h)
    outputs = [kl.Dense(1, name=f"Dense_{task}")(h) for task in ("Dev", "Hk")]
    model = keras.Model(inp, outputs)
    _randomize_batchnorm(model, seed)
    return model


def write_deepstarr_dir(root, length: int = 249, scale: int = 4, seed: int = 0):
    """The zoo's ``DeepSTARR`` definition with :func:`deepstarr`; returns (directory, Keras model)."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    model = deepstarr(seed=seed, length=length, scale=scale)
    with open(os.path.join(root, "model.json"), "w") as f:
        f.write(model.to_json())
    model.save_weights(os.path.join(root, "weights.h5"))
    with open(os.path.join(root, "model.yaml"), "w") as f:
        f.write(textwrap.dedent(f"""
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
            """).lstrip())  # fmt: skip
    return root, model
