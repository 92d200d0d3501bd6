"""The last zoo definitions the describer stumbled on, reproduced from kipoi/models (shortened,
same structure): AttentiveChrome (a templated group whose ``models.tsv`` has no ``model`` column)
is refused in one line; MMSplice/mtsplice (inputs nested in groups, ``seq: {acceptor: ...}``) is
described, its nested inputs named ``group/name``."""

import os
import textwrap

import pytest

from deepmr_kipoi.errors import DeepMRInputError

ATTENTIVECHROME_TEMPLATE = """
type: pytorch
args:
  module_file: models.py
  module_obj: att_chrome_model
  weights:
    url: {{model_url}}
    md5: {{model_md5}}
default_dataloader: ..  # path to the dataloader directory. Or to the dataloader class, e.g.: `kipoiseq.dataloaders.SeqIntervalDl

info: # General information about the model
    authors:
        - name: Ritambhara Singh
          github: rs3zz
    doc: Gene Expression Prediction
    cite_as: https://doi.org:/10.1101/329334
    trained_on: Histone Modidification and RNA Seq Data From Roadmad/REMC database # short dataset description
    license: MIT
dependencies:
    conda: # install via conda
      - python>=3.5
      - numpy
schema:  # Model schema
    inputs:
        shape: (100, 5)  # array shape of a single sample (omitting the batch dimension)
        doc: "Histone Modification Bin Matrix"
    targets:
        shape: (1, )
        doc: "Binary Classification"
"""

ATTENTIVECHROME_TSV = (
    "cell_type\tmodel link\tmd5\n"
    "E003\thttps://zenodo.org/api/files/2bf982b6-143f-49f6-b9ad-1b1e60f67292/"
    "E003_attchrome_avgAUC_model.pt?download=1\t9b4ff730ac5e70265f7a78162fa76768\n"
)


def _nested(group, names, indent):
    pad = " " * indent
    lines = [f"{pad}{group}:"]
    for n in names:
        lines += [
            f"{pad}  {n}:",
            f"{pad}    doc: sequence of {n}",
            f"{pad}    shape: (None,4)",
            f"{pad}    special_type: DNASeq",
        ]
    return "\n".join(lines)


PARTS = ("acceptor_intron", "acceptor", "exon", "donor", "donor_intron")
MTSPLICE_MODEL = (
    textwrap.dedent(
        """
        type: custom
        args:
          file: model.py
          object: MMSpliceModel
        default_dataloader: .
        info:
            authors:
                - name: Jun Cheng
                  github: s6juncheng
            doc: >
              Predict splicing variant effect (delta logit PSI) from VCF
        schema:
            inputs:
        """
    ).lstrip()
    + _nested("seq", PARTS, 6)
    + "\n"
    + _nested("mut_seq", PARTS, 6)
    + "\n"
    + textwrap.indent(
        textwrap.dedent(
            """
            targets:
                shape: (56, )
                doc: "Predicted delta logit(psi) for each tissue"
                column_labels: features.txt
            """
        ).lstrip(),
        "    ",
    )
)
MTSPLICE_DATALOADER = """
type: SampleIterator
defined_as: dataloader.SplicingVCFDataloader
args:
  gtf:
    doc: path to the GTF file required by the models (Ensemble)
  fasta_file:
    doc: reference genome fasta file
  vcf_file:
    doc: Path to the input vcf file
info:
  doc: Splicing variant dataloader
output_schema:
    inputs:
""" + _nested("seq", PARTS, 6)


@pytest.fixture
def zoo(tmp_path):
    group = tmp_path / "AttentiveChrome"
    group.mkdir()
    (group / "model-template.yaml").write_text(ATTENTIVECHROME_TEMPLATE.lstrip())
    (group / "models.tsv").write_text(ATTENTIVECHROME_TSV)
    mt = tmp_path / "MMSplice" / "mtsplice"
    mt.mkdir(parents=True)
    (mt / "model.yaml").write_text(MTSPLICE_MODEL)
    (mt / "dataloader.yaml").write_text(MTSPLICE_DATALOADER.lstrip())
    (mt / "features.txt").write_text("".join(f"tissue_{i}\n" for i in range(56)))
    return str(tmp_path)


def test_attentivechrome_is_refused_in_one_line(zoo):
    from deepmr_kipoi.kipoi_models import describe_model

    with pytest.raises(DeepMRInputError) as err:
        describe_model("AttentiveChrome/E003", source=zoo)
    message = str(err.value)
    assert "\n" not in message
    assert "Column 'model' has to exist" in message and "cannot be described" in message


def test_mmsplice_nested_inputs_are_described(zoo):
    from deepmr_kipoi.kipoi_models import describe_model

    d = describe_model(os.path.join("MMSplice", "mtsplice"), source=zoo)
    assert d.input_name == "seq/acceptor_intron"
    assert d.input_shape == (None, 4) and d.layout == "NLC"
    assert d.extra_inputs == (
        *(f"seq/{p}" for p in PARTS[1:]),
        *(f"mut_seq/{p}" for p in PARTS),
    )
    assert d.feature_names[:2] == ("tissue_0", "tissue_1") and len(d.feature_names) == 56
