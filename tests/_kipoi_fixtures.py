"""Small models in Kipoi's own model-directory format, built by the tests (no network).

* :func:`write_torch_model_dir` -- a ``kipoi.model.PyTorchModel`` with dropout (module file + state
  dict), input (4, L);
* :func:`write_keras_model_dir` -- a ``kipoi.model.KerasModel`` (architecture JSON + h5 weights written
  by tf_keras), input (L, 4), labels in a label file;
* :func:`write_dict_output_model_dir` -- a PyTorch model returning a dict of two output vectors;
* :func:`write_torch_zoo` -- a folder laid out like the Kipoi zoo with its PyTorch models
  (``DeepSEA/predict``, ``DeepSEA/variantEffects``, ``DeepSEA/beluga``, ``Basset``) as small networks
  of the real layer structure; their weights are pre-placed under
  ``<model>/downloaded/model_files/<arg>/<md5>`` with the md5 written into ``model.yaml``, where Kipoi
  looks for downloaded files. :func:`write_bpnet_zoo` adds ``BPNet-OSKN`` (its h5 is written by
  tf_keras), :func:`write_zoo` does both.

The session fixtures of ``tests/conftest.py`` build each of these once per test session.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import textwrap

import numpy as np

NOT_DOWNLOADABLE = "https://example.invalid/deepmr-test"


def md5sum(path) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def place_download(model_dir, arg: str, tmp_file) -> str:
    """Move ``tmp_file`` to where Kipoi keeps a downloaded model argument; return its md5."""
    md5 = md5sum(tmp_file)
    target = os.path.join(model_dir, "downloaded", "model_files", arg)
    os.makedirs(target, exist_ok=True)
    shutil.move(str(tmp_file), os.path.join(target, md5))
    return md5


def _write(path, text: str) -> None:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())


def _import_file(path, name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seeded_state(module, seed: int):
    import torch

    # random weights scaled by 1/sqrt(fan-in) so that sigmoid outputs stay away from 0 and 1
    gen = torch.Generator().manual_seed(seed)
    state = module.state_dict()
    for key, value in state.items():
        if not value.dtype.is_floating_point:
            continue
        if "running_var" in key:
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        elif value.ndim >= 2:
            state[key] = torch.randn(value.shape, generator=gen) / value[0].numel() ** 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.1
    return state


# -------------------------------------------------------------------------------------------------
# a PyTorchModel with dropout

TORCH_MODULE = """
import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, n_features=3, filters=6):
        super().__init__()
        self.conv = nn.Conv1d(4, filters, 5)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(filters, n_features)

    def forward(self, x):
        h = torch.relu(self.conv(x)).amax(dim=2)
        return self.fc(self.drop(h))


class DictCNN(nn.Module):
    def __init__(self, filters=5):
        super().__init__()
        self.conv = nn.Conv1d(4, filters, 7)
        self.chip = nn.Linear(filters, 2)
        self.dnase = nn.Linear(filters, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=2)
        return {"dnase": self.dnase(h), "chip": self.chip(h)}
"""

TORCH_FEATURES = ("TF_A", "TF_B", "DNase")


def write_torch_model_dir(root, length: int = 40, seed: int = 0) -> str:
    """A Kipoi PyTorchModel directory: TinyCNN (conv, dropout 0.3, linear), input (4, L), 3 outputs."""
    import torch

    root = str(root)
    os.makedirs(root, exist_ok=True)
    _write(os.path.join(root, "tiny_cnn.py"), TORCH_MODULE)
    mod = _import_file(os.path.join(root, "tiny_cnn.py"), "deepmr_test_tiny_cnn")
    net = mod.TinyCNN()
    torch.save(_seeded_state(net, seed), os.path.join(root, "weights.pth"))
    labels = "\n".join(f"        - {name}" for name in TORCH_FEATURES)
    _write(
        os.path.join(root, "model.yaml"),
        f"""
        defined_as: kipoi.model.PyTorchModel
        args:
          module_file: tiny_cnn.py
          module_class: TinyCNN
          module_kwargs:
            n_features: 3
          weights: weights.pth
        default_dataloader:
          defined_as: kipoiseq.dataloaders.SeqIntervalDl
          default_args:
            auto_resize_len: {length}
            alphabet_axis: 0
            dtype: np.float32
        info:
          authors:
            - name: deepmr test
          doc: Tiny CNN with dropout for tests.
        dependencies:
          pip:
            - torch
        schema:
          inputs:
            name: seq
            special_type: DNASeq
            shape: (4, {length})
            doc: one-hot DNA
          targets:
            name: scores
            shape: (3, )
            doc: three features
            column_labels:
        """,
    )
    with open(os.path.join(root, "model.yaml"), "a") as f:
        f.write(labels + "\n")
    return root


def write_dict_output_model_dir(root, length: int = 30, seed: int = 1) -> str:
    """A Kipoi PyTorchModel whose network returns a dict of two output vectors (input (4, L))."""
    import torch

    root = str(root)
    os.makedirs(root, exist_ok=True)
    _write(os.path.join(root, "tiny_cnn.py"), TORCH_MODULE)
    mod = _import_file(os.path.join(root, "tiny_cnn.py"), "deepmr_test_dict_cnn")
    torch.save(_seeded_state(mod.DictCNN(), seed), os.path.join(root, "weights.pth"))
    _write(
        os.path.join(root, "model.yaml"),
        f"""
        defined_as: kipoi.model.PyTorchModel
        args:
          module_file: tiny_cnn.py
          module_class: DictCNN
          weights: weights.pth
        default_dataloader:
          defined_as: kipoiseq.dataloaders.SeqIntervalDl
          default_args:
            auto_resize_len: {length}
            alphabet_axis: 0
        info:
          authors:
            - name: deepmr test
          doc: Two output heads.
        schema:
          inputs:
            name: seq
            special_type: DNASeq
            shape: (4, {length})
            doc: one-hot DNA
          targets:
            chip:
              shape: (2, )
              doc: two ChIP tracks
              column_labels:
                - CTCF
                - REST
            dnase:
              shape: (1, )
              doc: accessibility
        """,
    )
    return root


# -------------------------------------------------------------------------------------------------
# a KerasModel (architecture JSON + h5 weights)

KERAS_FEATURES = ("H3K27ac", "H3K4me3")


def write_keras_model_dir(root, length: int = 32, seed: int = 2) -> str:
    """A Kipoi KerasModel directory (tf_keras JSON + h5): conv, dropout, dense; input (L, 4)."""
    import tf_keras

    root = str(root)
    os.makedirs(root, exist_ok=True)
    tf_keras.utils.set_random_seed(seed)
    inp = tf_keras.layers.Input((length, 4), name="seq")
    h = tf_keras.layers.Conv1D(6, 5, activation="relu", name="conv")(inp)
    h = tf_keras.layers.GlobalMaxPooling1D(name="pool")(h)
    h = tf_keras.layers.Dropout(0.25, name="drop")(h)
    out = tf_keras.layers.Dense(2, name="out")(h)
    model = tf_keras.Model(inp, out)
    with open(os.path.join(root, "model.json"), "w") as f:
        f.write(model.to_json())
    model.save_weights(os.path.join(root, "weights.h5"))
    with open(os.path.join(root, "labels.txt"), "w") as f:
        f.write("\n".join(KERAS_FEATURES) + "\n")
    _write(
        os.path.join(root, "model.yaml"),
        f"""
        defined_as: kipoi.model.KerasModel
        args:
          arch: model.json
          weights: weights.h5
        default_dataloader:
          defined_as: kipoiseq.dataloaders.SeqIntervalDl
          default_args:
            auto_resize_len: {length}
        info:
          authors:
            - name: deepmr test
          doc: Tiny Keras CNN.
        schema:
          inputs:
            name: seq
            special_type: DNASeq
            shape: ({length}, 4)
            doc: one-hot DNA
          targets:
            name: marks
            shape: (2, )
            doc: two histone marks
            column_labels: labels.txt
        """,
    )
    return root


# -------------------------------------------------------------------------------------------------
# a zoo-like source

DEEPSEA_ARCH = """
import torch
from torch import nn


class ACGTtoAGCT(nn.Module):
    def forward(self, x):
        return x[:, [0, 2, 1, 3]]


class WithReverseComplement(nn.Module):
    # predicts forward and reverse-complement (AGCT order: complement = channel flip) and averages
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        rc = torch.flip(x, dims=(1, 3))
        both = self.net(torch.cat([x, rc], dim=0))
        n = x.shape[0]
        return (both[:n] + both[n:]) / 2


class Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def deepsea_body(n_out, length, c=(8, 8, 8), hidden=16):
    # DeepSEA's layer structure (Zhou & Troyanskaya 2015), narrow: 3 x [conv (1,8), threshold,
    # (max-pool (1,4))], dropout 0.2/0.2/0.5, two dense layers, sigmoid
    final = ((length - 7) // 4 - 7) // 4 - 7
    return nn.Sequential(
        nn.Conv2d(4, c[0], (1, 8)), nn.Threshold(0, 1e-06), nn.MaxPool2d((1, 4), (1, 4)), nn.Dropout(0.2),
        nn.Conv2d(c[0], c[1], (1, 8)), nn.Threshold(0, 1e-06), nn.MaxPool2d((1, 4), (1, 4)), nn.Dropout(0.2),
        nn.Conv2d(c[1], c[2], (1, 8)), nn.Threshold(0, 1e-06), nn.Dropout(0.5),
        Flatten(), nn.Linear(c[2] * final, hidden), nn.Threshold(0, 1e-06), nn.Linear(hidden, n_out),
        nn.Sigmoid(),
    )


N_OUT = {n_out}
LENGTH = {length}
predict_model = nn.Sequential(ACGTtoAGCT(), WithReverseComplement(deepsea_body(N_OUT, LENGTH)))
veff_model = nn.Sequential(ACGTtoAGCT(), deepsea_body(N_OUT, LENGTH))
"""

BELUGA_ARCH = """
from torch import nn


class Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class Beluga(nn.Module):
    # Beluga's layer structure (Zhou et al. 2018), narrow: 3 x two convs (1,8), dropout, max-pool
    def __init__(self, n_out={n_out}, length={length}, c=6, hidden=12):
        super().__init__()
        final = ((length - 14) // 4 - 14) // 4 - 14
        self.model = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(4, c, (1, 8)), nn.ReLU(), nn.Conv2d(c, c, (1, 8)), nn.ReLU(), nn.Dropout(0.2),
                nn.MaxPool2d((1, 4), (1, 4)),
                nn.Conv2d(c, c, (1, 8)), nn.ReLU(), nn.Conv2d(c, c, (1, 8)), nn.ReLU(), nn.Dropout(0.2),
                nn.MaxPool2d((1, 4), (1, 4)),
                nn.Conv2d(c, c, (1, 8)), nn.ReLU(), nn.Conv2d(c, c, (1, 8)), nn.ReLU(),
            ),
            nn.Sequential(
                nn.Dropout(0.5), Flatten(), nn.Linear(c * final, hidden), nn.ReLU(),
                nn.Linear(hidden, n_out),
            ),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.model(x)
"""

BASSET_ARCH = """
from torch import nn


class Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def basset(n_out={n_out}, length={length}, c=(6, 5, 5), hidden=10):
    # Basset's layer structure (Kelley et al. 2016), narrow: 3 x [conv (k,1), batch norm, ReLU,
    # max-pool], 2 x [dense, batch norm, ReLU, dropout 0.3], dense, sigmoid
    final = (((length - 18) // 3 - 10) // 4 - 6) // 4
    return nn.Sequential(
        nn.Conv2d(4, c[0], (19, 1)), nn.BatchNorm2d(c[0]), nn.ReLU(), nn.MaxPool2d((3, 1), (3, 1)),
        nn.Conv2d(c[0], c[1], (11, 1)), nn.BatchNorm2d(c[1]), nn.ReLU(), nn.MaxPool2d((4, 1), (4, 1)),
        nn.Conv2d(c[1], c[2], (7, 1)), nn.BatchNorm2d(c[2]), nn.ReLU(), nn.MaxPool2d((4, 1), (4, 1)),
        Flatten(),
        nn.Linear(c[2] * final, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(hidden, n_out), nn.Sigmoid(),
    )


model = basset()
"""

# the zoo's DeepSEA label file has duplicated labels; so does this one (column 2 and 4)
DEEPSEA_LABELS = (
    "GM12878_CTCF_None",
    "A549_CTCF_None",
    "K562_DNase_None",
    "A549_CTCF_None",
    "HeLa_Pol2_None",
)
BELUGA_LABELS = ("HepG2|DNase|None", "K562|CTCF|None", "GM12878|H3K27ac|None", "HUVEC|EP300|None")
BASSET_LABELS = ("8988T", "AoSMC", "Chorion", "CLL")
BPNET_TASKS = ("Oct4", "Sox2", "Nanog", "Klf4")


def _deepsea_yaml(
    module_file, module_key, module_value, md5, length, n_out, labels_path, extra_dl=""
):
    return f"""
    type: pytorch
    args:
      module_file: {module_file}
      {module_key}: {module_value}
      weights:
        url: {NOT_DOWNLOADABLE}/deepsea.pth
        md5: {md5}
    info:
      authors:
        - name: deepmr test
      doc: Narrow network with DeepSEA's layer structure.
    default_dataloader:
      defined_as: kipoiseq.dataloaders.SeqIntervalDl
      default_args:
        auto_resize_len: {length}
        alphabet_axis: 0
        dummy_axis: 1
        dtype: np.float32{extra_dl}
    schema:
      inputs:
        name: seq
        special_type: DNASeq
        shape: (4, 1, {length})
        doc: DNA sequence
      targets:
        name: TFBS_DHS_probs
        shape: ({n_out}, )
        doc: probabilities
        column_labels:
          - {labels_path}
    """


def write_zoo(root, bpnet_length: int = 100, bpnet_filters: int = 6, **torch_kwargs) -> str:
    """A folder laid out like the Kipoi zoo, weights pre-placed under ``downloaded/model_files``:
    :func:`write_torch_zoo` and :func:`write_bpnet_zoo`."""
    write_torch_zoo(root, **torch_kwargs)
    return write_bpnet_zoo(root, length=bpnet_length, filters=bpnet_filters)


def write_torch_zoo(root, deepsea_length: int = 200, basset_length: int = 600) -> str:
    """The zoo's PyTorch models (DeepSEA predict/variantEffects/beluga, Basset) in a zoo-like folder."""
    import torch

    root = str(root)
    n_deepsea = len(DEEPSEA_LABELS)
    # DeepSEA/predict and DeepSEA/variantEffects share ../model_architecture.py and ../predictor_names.txt
    arch = os.path.join(root, "DeepSEA", "model_architecture.py")
    _write(arch, DEEPSEA_ARCH.format(n_out=n_deepsea, length=deepsea_length))
    _write(os.path.join(root, "DeepSEA", "predictor_names.txt"), "\n".join(DEEPSEA_LABELS) + "\n")
    mod = _import_file(arch, "deepmr_test_deepsea_arch")
    for sub, obj, seed in (("predict", "predict_model", 10), ("variantEffects", "veff_model", 11)):
        model_dir = os.path.join(root, "DeepSEA", sub)
        os.makedirs(model_dir, exist_ok=True)
        tmp = os.path.join(model_dir, "w.tmp")
        torch.save(_seeded_state(getattr(mod, obj), seed), tmp)
        md5 = place_download(model_dir, "weights", tmp)
        _write(
            os.path.join(model_dir, "model.yaml"),
            _deepsea_yaml(
                "../model_architecture.py",
                "module_obj",
                obj,
                md5,
                deepsea_length,
                n_deepsea,
                "../predictor_names.txt",
            ),
        )

    beluga_dir = os.path.join(root, "DeepSEA", "beluga")
    beluga_length = 2 * deepsea_length + 100
    _write(
        os.path.join(beluga_dir, "model.py"),
        BELUGA_ARCH.format(n_out=len(BELUGA_LABELS), length=beluga_length),
    )
    _write(os.path.join(beluga_dir, "predictor_names.txt"), "\n".join(BELUGA_LABELS) + "\n")
    bmod = _import_file(os.path.join(beluga_dir, "model.py"), "deepmr_test_beluga")
    tmp = os.path.join(beluga_dir, "w.tmp")
    torch.save(_seeded_state(bmod.Beluga(), 12), tmp)
    md5 = place_download(beluga_dir, "weights", tmp)
    _write(
        os.path.join(beluga_dir, "model.yaml"),
        f"""
        defined_as: kipoi.model.PyTorchModel
        args:
          weights:
            url: {NOT_DOWNLOADABLE}/beluga.pth
            md5: {md5}
          module_class: Beluga
          module_file: model.py
        info:
          authors:
            - name: deepmr test
          doc: Narrow network with Beluga's layer structure.
        default_dataloader:
          defined_as: kipoiseq.dataloaders.SeqIntervalDl
          default_args:
            auto_resize_len: {beluga_length}
            alphabet_axis: 0
            dummy_axis: 1
            alphabet: AGCT
            dtype: np.float32
        schema:
          inputs:
            name: seq
            special_type: DNASeq
            shape: (4, 1, {beluga_length})
            doc: DNA sequence
          targets:
            name: TFBS_DHS_probs
            shape: ({len(BELUGA_LABELS)}, )
            doc: probabilities
            column_labels:
              - predictor_names.txt
        """,
    )

    basset_dir = os.path.join(root, "Basset")
    _write(
        os.path.join(basset_dir, "basset_arch.py"),
        BASSET_ARCH.format(n_out=len(BASSET_LABELS), length=basset_length),
    )
    _write(os.path.join(basset_dir, "target_labels.txt"), "\n".join(BASSET_LABELS) + "\n")
    amod = _import_file(os.path.join(basset_dir, "basset_arch.py"), "deepmr_test_basset")
    tmp = os.path.join(basset_dir, "w.tmp")
    torch.save(_seeded_state(amod.model, 13), tmp)
    md5 = place_download(basset_dir, "weights", tmp)
    _write(
        os.path.join(basset_dir, "model.yaml"),
        f"""
        type: pytorch
        args:
          module_file: basset_arch.py
          module_obj: model
          weights:
            md5: {md5}
            url: {NOT_DOWNLOADABLE}/basset.pth
        default_dataloader:
          defined_as: kipoiseq.dataloaders.SeqIntervalDl
          default_args:
            alphabet_axis: 0
            auto_resize_len: {basset_length}
            dtype: np.float32
            dummy_axis: 2
        info:
          authors:
            - name: deepmr test
          doc: Narrow network with Basset's layer structure.
        schema:
          inputs:
            name: seq
            special_type: DNASeq
            shape: (4,{basset_length},1)
            doc: DNA sequence
          targets:
            name: DHS_probs
            shape: ({len(BASSET_LABELS)}, )
            doc: probabilities
            column_labels:
              - target_labels.txt
        """,
    )
    return root


def write_bpnet_zoo(root, length: int = 100, filters: int = 6) -> str:
    """Add ``BPNet-OSKN`` (a whole-model Keras h5 with the zoo's layer names) to a zoo-like folder."""
    root = str(root)
    bpnet_length, bpnet_filters = length, filters
    bpnet_dir = os.path.join(root, "BPNet-OSKN")
    os.makedirs(bpnet_dir, exist_ok=True)
    tmp = os.path.join(bpnet_dir, "bpnet.h5")
    write_bpnet_h5(tmp, length=bpnet_length, filters=bpnet_filters, seed=14)
    md5 = place_download(bpnet_dir, "model_file", tmp)
    targets = "".join(
        f"    {task}:\n      shape: ({bpnet_length},2)\n      doc: ChIP-nexus profile of {task}.\n"
        for task in BPNET_TASKS
    )
    with open(os.path.join(bpnet_dir, "model.yaml"), "w") as f:
        f.write(
            "defined_as: model.BPNetOldSeqModel\n"
            "args:\n"
            "  model_file:\n"
            f"    url: {NOT_DOWNLOADABLE}/bpnet.model.h5\n"
            f"    md5: {md5}\n"
            "default_dataloader:\n"
            "  defined_as: kipoiseq.dataloaders.SeqIntervalDl\n"
            "  default_args:\n"
            f"    auto_resize_len: {bpnet_length}\n"
            "    ignore_targets: True\n"
            "info:\n"
            "  authors:\n"
            "    - name: deepmr test\n"
            "  doc: Narrow BPNet with the zoo's layer names.\n"
            "schema:\n"
            "  inputs:\n"
            f"    shape: ({bpnet_length}, 4)\n"
            "    doc: One-hot encoded DNA sequence.\n"
            "  targets:\n" + targets
        )
    return root


# -------------------------------------------------------------------------------------------------
# BPNet h5 with the zoo's layer names


def build_bpnet_keras(
    length: int = 100,
    filters: int = 6,
    n_dil: int = 9,
    conv1_kernel: int = 25,
    tconv_kernel: int = 25,
    seed: int = 0,
):
    """A tf_keras BPNet with the zoo model's layer names, including its (zero-input) bias branches.

    Layer creation order in the zoo model (Keras 2.2 auto-numbering): body conv1d_1..conv1d_10 and
    add_1..add_9; then per task a profile head (reshape, conv2d_transpose_k, reshape, bias Conv1D) and
    a counts head (global average pooling, dense_(2k-1), bias dense_(2k)).
    """
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    kl = keras.layers
    seeds = iter(range(seed * 1000, seed * 1000 + 1000))

    def init():
        return keras.initializers.RandomNormal(stddev=0.3, seed=next(seeds))

    seq = kl.Input((length, 4), name="seq")
    h = kl.Conv1D(
        filters,
        conv1_kernel,
        padding="same",
        activation="relu",
        name="conv1d_1",
        kernel_initializer=init(),
        bias_initializer=init(),
    )(seq)
    for i in range(1, n_dil + 1):
        c = kl.Conv1D(
            filters,
            3,
            padding="same",
            activation="relu",
            dilation_rate=2**i,
            name=f"conv1d_{i + 1}",
            kernel_initializer=init(),
            bias_initializer=init(),
        )(h)
        h = kl.add([h, c], name=f"add_{i}")
    inputs, outputs = [seq], []
    conv_id = n_dil + 2
    for k, task in enumerate(BPNET_TASKS, start=1):
        p = kl.Reshape((-1, 1, filters), name=f"reshape_{2 * k - 1}")(h)
        p = kl.Conv2DTranspose(
            2,
            kernel_size=(tconv_kernel, 1),
            padding="same",
            name=f"conv2d_transpose_{k}",
            kernel_initializer=init(),
            bias_initializer=init(),
        )(p)
        p = kl.Reshape((-1, 2), name=f"reshape_{2 * k}")(p)
        pb = kl.Input((length, 2), name=f"bias/{task}/profile")
        p = kl.add(
            [p, kl.Conv1D(2, 1, use_bias=False, name=f"conv1d_{conv_id}")(pb)],
            name=f"add_profile_{k}",
        )
        conv_id += 1
        c = kl.GlobalAveragePooling1D(name=f"global_average_pooling1d_{k}")(h)
        c = kl.Dense(
            2, name=f"dense_{2 * k - 1}", kernel_initializer=init(), bias_initializer=init()
        )(c)
        cb = kl.Input((2,), name=f"bias/{task}/counts")
        c = kl.add(
            [c, kl.Dense(2, use_bias=False, name=f"dense_{2 * k}")(cb)], name=f"add_counts_{k}"
        )
        inputs += [pb, cb]
        outputs += [
            kl.Lambda(lambda x: x, name=f"{task}/profile")(p),
            kl.Lambda(lambda x: x, name=f"{task}/counts")(c),
        ]
    return keras.Model(inputs, outputs)


def save_keras_h5(model, path) -> None:
    """Whole-model h5 save (the legacy format the zoo's Keras models use), without the warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`")
        model.save(str(path), include_optimizer=False)


def write_bpnet_h5(path, length: int = 100, filters: int = 6, seed: int = 0, **kwargs):
    """Save :func:`build_bpnet_keras` as a whole-model Keras h5 (as the zoo's file is); returns the
    Keras model (the reference to compare with)."""
    model = build_bpnet_keras(length=length, filters=filters, seed=seed, **kwargs)
    tmp = str(path) + ".h5" if not str(path).endswith(".h5") else str(path)
    save_keras_h5(model, tmp)
    if tmp != str(path):
        shutil.move(tmp, str(path))
    return model


def keras_bpnet_predict(model, onehot: np.ndarray) -> dict[str, np.ndarray]:
    """Run the Keras BPNet with zero bias inputs (as Kipoi's wrapper does)."""
    n, length = onehot.shape[:2]
    feed = {"seq": onehot}
    for task in BPNET_TASKS:
        feed[f"bias/{task}/profile"] = np.zeros((n, length, 2), np.float32)
        feed[f"bias/{task}/counts"] = np.zeros((n, 2), np.float32)
    preds = model(feed, training=False)  # a direct call: predict_on_batch traces a graph first
    names = [f"{t}/{h}" for t in BPNET_TASKS for h in ("profile", "counts")]
    return {name: np.asarray(p) for name, p in zip(names, preds)}
