"""Templated Kipoi model groups, built by the tests in the zoo's layout (no network, random weights).

A Kipoi model group is a folder with ``model-template.yaml`` (a Jinja2 template of ``model.yaml``)
and ``models.tsv`` (one row per model: the ``model`` column names it, the other columns fill the
template). Kipoi renders the template with a model's row to get that model's description. The groups
here reproduce the structure of three real zoo definitions (kipoi/models), narrow and with random
weights:

* ``DeepBind`` -- ``type: keras``, ``arch`` (JSON) and ``weights`` (h5) as remote files, a
  ``custom_objects`` module, nested model names (``Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF``), a
  ``{% if model == ... %}`` test section, input (101, 4), one output without labels;
* ``CpGenie`` -- ``type: keras``, input (4, 1, L) (``alphabet_axis: 0``, ``dummy_axis: 1``), two
  labelled outputs;
* ``rbp_eclip`` -- ``type: keras``, a whole-model h5 (``weights`` only), ``default_dataloader: .``
  with a ``dataloader-template.yaml``, a sequence input (101, 4) plus eight distance inputs.

Weights are pre-placed where Kipoi keeps a group member's downloads:
``<group>/downloaded/model_files/<model name>/<arg>/<md5>``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap

import numpy as np

from tests._kipoi_fixtures import NOT_DOWNLOADABLE, md5sum, save_keras_h5

DEEPBIND_MODELS = (
    "Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF",
    "Homo_sapiens/TF/D00817.001_ChIP-seq_TBP",
)
CPGENIE_MODELS = ("A549_ENCSR000DDI", "GM19239_ENCSR000DGH")
CPGENIE_LABELS = ("methylation_prob", "unmethylation_prob")
RBP_MODELS = ("AARS", "TAF15")
RBP_DISTANCES = (
    "dist_tss",
    "dist_polya",
    "dist_exon_intron",
    "dist_intron_exon",
    "dist_start_codon",
    "dist_stop_codon",
    "dist_gene_start",
    "dist_gene_end",
)


def _write(path, text: str) -> None:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())


def _write_tsv(path, columns, rows) -> None:
    with open(path, "w") as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(str(row[c]) for c in columns) + "\n")


def _place(group_dir, model: str, arg: str, tmp: str) -> str:
    """Pre-place a group member's file where Kipoi looks for its download; return the md5."""
    md5 = md5sum(tmp)
    target = os.path.join(group_dir, "downloaded", "model_files", model, arg)
    os.makedirs(target, exist_ok=True)
    shutil.move(tmp, os.path.join(target, md5))
    return md5


# -------------------------------------------------------------------------------------------------
# DeepBind


DEEPBIND_TEMPLATE = """
type: keras
args:
  arch:
    url: {{ args_arch_url }}
    md5: {{ args_arch_md5 }}
  weights:
    url: {{ args_weights_url }}
    md5: {{ args_weights_md5 }}
  custom_objects: custom_keras_objects.py
  backend: tensorflow
  image_dim_ordering: tf

info:
  authors:
      - name: deepmr test
  name: DeepBind
  version: 0.1
  doc: >
    Narrow network with DeepBind's structure: convolution, global max pooling, dense layers.
  tags:
    - DNA binding

default_dataloader:
  defined_as: kipoiseq.dataloaders.SeqIntervalDl
  default_args:
    auto_resize_len: 101

schema:
  inputs:
    name: seq
    special_type: DNASeq
    shape: (101, 4)
    doc: DNA sequence
    associated_metadata: ranges
  targets:
    name: binding_prob
    shape: (1, )
    doc: Protein binding probability
postprocessing:
    variant_effects:
      seq_input:
        - seq
      scoring_functions:
          - type: diff

{% if model == 'Homo_sapiens/TF/D00817.001_ChIP-seq_TBP' %}
test:
  expect:
    url: https://example.invalid/predictions/DeepBind/{{ model }}/predictions.h5
    md5: 49efa1bb7794001d744b8ff1eb2ebd5c
{% endif %}
"""


def build_deepbind(seed: int, length: int = 101, filters: int = 8):
    """DeepBind's layer structure (Alipanahi et al. 2015), narrow: conv, max pool, dense, dropout."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    kl = keras.layers
    inp = kl.Input((length, 4), name="seq")
    h = kl.Conv1D(filters, 24, activation="relu", name="conv")(inp)
    h = kl.GlobalMaxPooling1D(name="pool")(h)
    h = kl.Dense(16, activation="relu", name="hidden")(h)
    h = kl.Dropout(0.5, name="drop")(h)
    return keras.Model(inp, kl.Dense(1, activation="sigmoid", name="binding")(h))


def write_deepbind_group(root) -> str:
    """The ``DeepBind`` group: two members, Keras JSON + h5 each, in ``<root>/DeepBind``."""
    group = os.path.join(str(root), "DeepBind")
    os.makedirs(group, exist_ok=True)
    _write(os.path.join(group, "model-template.yaml"), DEEPBIND_TEMPLATE)
    # the zoo's file hands Keras the tensorflow module for its Lambda layers
    _write(
        os.path.join(group, "custom_keras_objects.py"),
        "import tensorflow as tf\n\nOBJECTS = {'tf': tf}\n",
    )
    rows = []
    for k, name in enumerate(DEEPBIND_MODELS):
        model = build_deepbind(seed=20 + k)
        arch, weights = os.path.join(group, "arch.tmp"), os.path.join(group, "weights.tmp.h5")
        with open(arch, "w") as f:
            f.write(model.to_json())
        model.save_weights(weights)
        flat = name.replace("/", "-")
        rows.append(
            {
                "model": name,
                "args_arch": f"model_files/{flat}.json",
                "args_weights": f"model_files/{flat}.h5",
                "args_arch_md5": _place(group, name, "arch", arch),
                "args_weights_md5": _place(group, name, "weights", weights),
                "args_arch_url": f"{NOT_DOWNLOADABLE}/{flat}.json",
                "args_weights_url": f"{NOT_DOWNLOADABLE}/{flat}.h5",
            }
        )
    _write_tsv(os.path.join(group, "models.tsv"), list(rows[0]), rows)
    return group


# -------------------------------------------------------------------------------------------------
# CpGenie


CPGENIE_TEMPLATE = """
type: keras
args:
  arch:
    url: {{{{ args_arch_url }}}}
    md5: {{{{ args_arch_md5 }}}}
  weights:
    url: {{{{ args_weights_url }}}}
    md5: {{{{ args_weights_md5 }}}}
  backend: tensorflow
  image_dim_ordering: tf
info:
  authors:
      - name: deepmr test
  name: CpGenie
  version: 0.1
  doc: >
    Narrow network with CpGenie's structure: three convolution and max-pooling blocks on a
    (4, 1, L) input, two dense layers, a softmax over methylated and unmethylated.
  tags:
    - DNA methylation
default_dataloader:
  defined_as: kipoiseq.dataloaders.SeqIntervalDl
  default_args:
    auto_resize_len: {length}
    alphabet_axis: 0
    dummy_axis: 1
schema:
  inputs:
    name: seq
    special_type: DNASeq
    shape: (4, 1, {length})
    doc: DNA sequence
    associated_metadata: ranges
  targets:
    name: methylation_prob
    shape: (2, )
    doc: Methylated and Unmethylated probabilities
    column_labels:
            - methylation_prob
            - unmethylation_prob

{{% if model == 'GM19239_ENCSR000DGH' %}}
test:
  expect:
    url: https://example.invalid/predictions/CpGenie/{{{{ model }}}}/predictions.h5
    md5: 3727f6763f5c8cc2f8a40889c84cf123
  precision_decimal: 6
{{% endif %}}
"""


def build_cpgenie(seed: int, length: int = 251, filters: int = 6):
    """CpGenie's layer structure (Zeng & Gifford 2017), narrow: (4, 1, L) input, three blocks of
    convolution (1, k) and max pooling (1, 4) along the sequence, dense, dropout, softmax."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    kl = keras.layers
    inp = kl.Input((4, 1, length), name="seq")
    h = kl.Permute((2, 3, 1), name="to_channels_last")(inp)  # (1, L, 4): TensorFlow's CPU layout
    for i, k in enumerate((7, 7, 5)):
        h = kl.Conv2D(filters, (1, k), activation="relu", name=f"conv{i}")(h)
        h = kl.MaxPooling2D((1, 4), name=f"pool{i}")(h)
    h = kl.Flatten(name="flatten")(h)
    h = kl.Dense(16, activation="relu", name="dense0")(h)
    h = kl.Dropout(0.5, name="drop")(h)
    return keras.Model(inp, kl.Dense(2, activation="softmax", name="out")(h))


def write_cpgenie_group(root, length: int = 251) -> str:
    """The ``CpGenie`` group: two members (JSON + h5 each) in ``<root>/CpGenie``."""
    group = os.path.join(str(root), "CpGenie")
    os.makedirs(group, exist_ok=True)
    _write(os.path.join(group, "model-template.yaml"), CPGENIE_TEMPLATE.format(length=length))
    rows = []
    for k, name in enumerate(CPGENIE_MODELS):
        model = build_cpgenie(seed=30 + k, length=length)
        arch, weights = os.path.join(group, "arch.tmp"), os.path.join(group, "weights.tmp.h5")
        with open(arch, "w") as f:
            f.write(model.to_json())
        model.save_weights(weights)
        rows.append(
            {
                "model": name,
                "args_arch": f"model_files/{name}.json",
                "args_weights": f"model_files/{name}.h5",
                "args_arch_md5": _place(group, name, "arch", arch),
                "args_weights_md5": _place(group, name, "weights", weights),
                "args_arch_url": f"{NOT_DOWNLOADABLE}/{name}",
                "args_weights_url": f"{NOT_DOWNLOADABLE}/{name}.h5",
            }
        )
    _write_tsv(os.path.join(group, "models.tsv"), list(rows[0]), rows)
    return group


# -------------------------------------------------------------------------------------------------
# rbp_eclip


RBP_TEMPLATE = """
type: keras
args:
    weights:
        url: {{{{ args_weights_url }}}}
        md5: {{{{ args_weights_md5 }}}}
    custom_objects: custom_keras_objects.py
    backend: tensorflow
    image_dim_ordering: tf
default_dataloader: . # relative path to the default dataloader

info:
    authors:
        - name: deepmr test
    version: 0.1
    doc: >
      RBP binding from a 101-nt sequence and distances to genomic landmarks (structure of
      Avsec et al. 2018).
    tags:
        - RNA binding
schema:
    inputs:
        seq:
            shape: (101, 4)
            special_type: DNASeq
            doc: One-hot encoded RNA sequence
{distances}
    targets:
        shape: (1, )
        doc: Predicted binding strength

{{% if model == 'AARS' %}}
test:
  expect:
    url: https://example.invalid/predictions/rbp_eclip/{{{{ model }}}}/predictions.h5
    md5: 5434fe5615f5a5a80f23ae046d6ff95e
{{% endif %}}
"""

RBP_DATALOADER_TEMPLATE = """
defined_as: dataloader.SeqDistDataset
args:
  intervals_file:
    doc: bed6 file with `chrom start end id score strand` columns
  fasta_file:
    doc: Reference genome sequence
  gtf_file:
    doc: file path; Genome annotation GTF file
  position_transformer_file:
    doc: Provided file for each dataloader obtained from {{ dl_url }}
    default:
      url: {{ dl_url }}
      md5: {{ dl_md5 }}
info:
  authors:
  - name: deepmr test
  doc: sequence and distances to the nearest genomic landmarks
output_schema:
  inputs:
    seq:
      shape: (101, 4)
      special_type: DNASeq
      doc: One-hot encoded RNA sequence
  targets:
    shape: (1, )
    doc: Measured binding strength
"""


def build_rbp(seed: int, length: int = 101, filters: int = 6):
    """rbp_eclip's structure, narrow: the sequence through convolution and pooling, each distance
    (1, 10) through a dense layer, concatenated into one dense output."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    kl = keras.layers
    seq = kl.Input((length, 4), name="seq")
    h = kl.Conv1D(filters, 11, activation="relu", name="conv")(seq)
    h = kl.GlobalAveragePooling1D(name="pool")(h)
    inputs, parts = [seq], [h]
    for name in RBP_DISTANCES:
        d = kl.Input((1, 10), name=name)
        inputs.append(d)
        parts.append(kl.Flatten(name=f"flat_{name}")(kl.Dense(1, name=f"spline_{name}")(d)))
    h = kl.Concatenate(name="concat")(parts)
    return keras.Model(inputs, kl.Dense(1, name="binding")(h))


def write_rbp_group(root) -> str:
    """The ``rbp_eclip`` group: two members, a whole-model h5 each, in ``<root>/rbp_eclip``."""
    group = os.path.join(str(root), "rbp_eclip")
    os.makedirs(group, exist_ok=True)
    distances = "".join(
        f"        {name}:\n            shape: (1, 10)\n            doc: distance, B-spline basis\n"
        for name in RBP_DISTANCES
    )
    _write(
        os.path.join(group, "model-template.yaml"),
        RBP_TEMPLATE.format(distances=distances.rstrip("\n")),
    )
    _write(os.path.join(group, "dataloader-template.yaml"), RBP_DATALOADER_TEMPLATE)
    _write(os.path.join(group, "custom_keras_objects.py"), "OBJECTS = None\n")
    rows = []
    for k, name in enumerate(RBP_MODELS):
        tmp = os.path.join(group, "model.tmp.h5")
        save_keras_h5(build_rbp(seed=40 + k), tmp)
        rows.append(
            {
                "model": name,
                "args_weights": f"model_files/{name}.h5",
                "args_weights_md5": _place(group, name, "weights", tmp),
                "args_weights_url": f"{NOT_DOWNLOADABLE}/{name}.h5",
                "dl_md5": "f04f130ec0f0635ee5c9f5fea64c628c",
                "dl_url": f"{NOT_DOWNLOADABLE}/{name}.dataloader.pkl",
            }
        )
    _write_tsv(os.path.join(group, "models.tsv"), list(rows[0]), rows)
    return group


def write_groups(root) -> str:
    """A zoo-like folder with the three groups; returns ``root``."""
    write_deepbind_group(root)
    write_cpgenie_group(root)
    write_rbp_group(root)
    return str(root)


def keras_reference(group_dir: str, model: str, arch_arg: str | None = "arch"):
    """The Keras model of a group member, read straight from its pre-placed files (the reference)."""
    import tf_keras as keras

    base = os.path.join(group_dir, "downloaded", "model_files", model)

    def only_file(arg):
        return os.path.join(base, arg, os.listdir(os.path.join(base, arg))[0])

    # Kipoi names downloads by md5, without extension; tf_keras reads HDF5 by extension
    with tempfile.TemporaryDirectory() as tmp:
        weights = shutil.copy(only_file("weights"), os.path.join(tmp, "w.h5"))
        if arch_arg is None:
            return keras.models.load_model(weights, compile=False)
        with open(only_file(arch_arg)) as f:
            net = keras.models.model_from_json(f.read())
        net.load_weights(weights)
    return net


def onehot(n: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]
