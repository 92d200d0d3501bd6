"""Templated Kipoi groups read as Kipoi reads them (third bad-input corpus).

* a group with both ``model-template.yml`` and ``model-template.yaml``: Kipoi (and the YAML scan)
  read ``.yml``; the description must come from the same file;
* a template that prints a column ``models.tsv`` lacks: Kipoi renders it empty (a feature named
  ``''`` or ``None``); refused in one line naming the column and the fix.
"""

from pathlib import Path

import pytest

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models import describe_model

TEMPLATE = """\
defined_as: kipoi.model.PyTorchModel
args:
  module_file: net.py
  module_class: Net
  weights: weights.pth
info:
  authors:
    - name: t
  doc: d
schema:
  inputs:
    shape: (4, 40)
    name: sequence
    doc: the sequence
  targets:
    name: out
    shape: (2,)
    doc: labelled outputs
    column_labels: [{a}, {b}]
"""


def _group(tmp_path: Path, templates: dict, tsv: str) -> str:
    folder = tmp_path / "zoo" / "grp"
    folder.mkdir(parents=True)
    for name, (a, b) in templates.items():
        (folder / name).write_text(TEMPLATE.format(a=a, b=b))
    (folder / "models.tsv").write_text(tsv)
    return str(tmp_path / "zoo")


def test_yml_template_wins_over_yaml_as_in_kipoi(tmp_path):
    zoo = _group(
        tmp_path,
        {
            "model-template.yml": ("yml_a", "yml_b"),
            "model-template.yaml": ("yaml_a", "yaml_b"),
        },
        "model\ta\nm1\tx\n",
    )
    assert describe_model("grp/m1", source=zoo).feature_names == ("yml_a", "yml_b")


def test_template_column_missing_from_the_table_is_one_line(tmp_path):
    zoo = _group(tmp_path, {"model-template.yaml": ('"{{ a }}"', '"{{ b }}"')}, "model\ta\nm1\tx\n")
    with pytest.raises(DeepMRInputError) as info:
        describe_model("grp/m1", source=zoo)
    message = str(info.value)
    assert "\n" not in message and "'b'" in message and "models.tsv lacks" in message
    assert "add that column" in message
