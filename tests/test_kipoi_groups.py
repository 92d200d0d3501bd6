"""Templated Kipoi model groups (``model-template.yaml`` + ``models.tsv``) built by the tests in the
zoo's layout, shaped like the real DeepBind, CpGenie and rbp_eclip definitions (random weights):
described through Kipoi's own source machinery, loaded and checked against the Keras networks read
straight from their files, run end to end, and refused with one line where a template or a table
cell would run code."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import cli
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models import describe_model, load_model
from tests import _kipoi_groups as kg

CTCF = "DeepBind/" + kg.DEEPBIND_MODELS[0]
TBP = "DeepBind/" + kg.DEEPBIND_MODELS[1]


@pytest.fixture
def groups(kipoi_groups):
    return kipoi_groups


def _copy(groups, tmp_path, group):
    shutil.copytree(os.path.join(groups, group), tmp_path / group)
    return str(tmp_path)


def test_describe_each_group_member(groups):
    cases = {
        CTCF: ("KerasModel", "NLC", (101, 4), 101, ("binding_prob/0",), ("arch", "weights"), ()),
        TBP: ("KerasModel", "NLC", (101, 4), 101, ("binding_prob/0",), ("arch", "weights"), ()),
        "CpGenie/A549_ENCSR000DDI": (
            "KerasModel",
            "NC1L",
            (4, 1, 251),
            251,
            kg.CPGENIE_LABELS,
            ("arch", "weights"),
            (),
        ),
        "rbp_eclip/AARS": (
            "KerasModel",
            "NLC",
            (101, 4),
            101,
            ("output0/0",),
            ("weights",),
            kg.RBP_DISTANCES,
        ),
    }
    for name, (kind, layout, shape, length, features, args, extra) in cases.items():
        d = describe_model(name, source=groups)
        got = (
            d.model_type,
            d.layout,
            d.input_shape,
            d.sequence_length,
            d.feature_names,
            tuple(w.arg for w in d.weight_files),
            d.extra_inputs,
        )
        assert got == (kind, layout, shape, length, features, args, extra), name
        group, model = name.split("/", 1)
        # each member's own files, where Kipoi keeps a group member's downloads
        table = pd.read_csv(os.path.join(groups, group, "models.tsv"), sep="\t").set_index("model")
        for w in d.weight_files:
            assert w.path == os.path.join(
                groups,
                group,
                "downloaded",
                "model_files",
                model,
                w.arg,
                table.loc[model, f"args_{w.arg}_md5"],
            )
            assert w.present and w.url == table.loc[model, f"args_{w.arg}_url"]
        assert d.model_dir == os.path.join(groups, group)
    assert "DeepBind's structure" in describe_model(CTCF, source=groups).doc


def test_group_members_load_and_predict_like_their_keras_networks(groups):
    for name, length in ((CTCF, 101), (TBP, 101), ("CpGenie/GM19239_ENCSR000DGH", 251)):
        group, model = name.split("/", 1)
        net = kg.keras_reference(os.path.join(groups, group), model)
        x = kg.onehot(3, length, seed=1)
        feed = x if group == "DeepBind" else x.transpose(0, 2, 1)[:, :, None, :]
        loaded = load_model(name, source=groups, uncertainty="none")
        np.testing.assert_allclose(
            loaded.predict_samples(x)[0], net(feed, training=False).numpy(), rtol=1e-5, atol=1e-6
        )
    # the two DeepBind members are different networks (each row its own files)
    x = kg.onehot(2, 101, seed=2)
    a = load_model(CTCF, source=groups, uncertainty="none").predict_samples(x)
    b = load_model(TBP, source=groups, uncertainty="none").predict_samples(x)
    assert np.abs(a - b).max() > 1e-3


def test_a_member_with_inputs_besides_the_sequence_is_refused_in_one_line(groups):
    with pytest.raises(
        DeepMRInputError,
        match=r"rbp_eclip/AARS takes inputs besides the DNA sequence "
        r"\(dist_tss, dist_polya, .*register an adapter",
    ):
        load_model("rbp_eclip/AARS", source=groups)


def test_unknown_member_and_bad_tables(groups, tmp_path):
    with pytest.raises(DeepMRInputError, match="not found in source"):
        describe_model("DeepBind/Homo_sapiens/TF/D99999.001_none", source=groups)
    source = _copy(groups, tmp_path, "CpGenie")
    table = os.path.join(source, "CpGenie", "models.tsv")
    df = pd.read_csv(table, sep="\t")
    df.rename(columns={"args_arch_url": "arch_url"}).to_csv(table, sep="\t", index=False)
    # Kipoi renders a field the table lacks as empty text (the model then names no download
    # address): refused, naming the column
    with pytest.raises(
        DeepMRInputError,
        match=r"uses the column 'args_arch_url', which .*models.tsv lacks \(model "
        r"'A549_ENCSR000DDI'\); add that column",
    ):
        load_model("CpGenie/A549_ENCSR000DDI", source=source)


@pytest.mark.parametrize("where", ["template", "table", "jinja"])
def test_code_in_a_template_or_its_table_is_refused_before_kipoi_reads_it(groups, tmp_path, where):
    source = _copy(groups, tmp_path, "CpGenie")
    template = os.path.join(source, "CpGenie", "model-template.yaml")
    table = os.path.join(source, "CpGenie", "models.tsv")
    marker = tmp_path / "ran"
    if where == "template":
        with open(template, "a") as f:
            f.write(f"\nextra: !!python/object/apply:os.system ['touch {marker}']\n")
    elif where == "table":
        df = pd.read_csv(table, sep="\t")
        df.loc[0, "args_arch_md5"] = f"!!python/object/apply:os.system ['touch {marker}']"
        df.to_csv(table, sep="\t", index=False)
    else:
        with open(template, "a") as f:
            f.write("\n# {{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    message = (
        "reaches into Python objects"
        if where == "jinja"
        else "runs Python code when Kipoi reads it"
    )
    with pytest.raises(DeepMRInputError, match=message) as err:
        describe_model("CpGenie/A549_ENCSR000DDI", source=source)
    assert "\n" not in str(err.value) and "--trust-model-code" in str(err.value)
    with pytest.raises(DeepMRInputError, match=message):
        load_model("CpGenie/A549_ENCSR000DDI", source=source)
    assert not marker.exists()


def test_deepmr_run_and_info_on_a_group_member(groups, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(
        [
            "run",
            "--model",
            "CpGenie/A549_ENCSR000DDI",
            "--source",
            groups,
            "--n-samples",
            "4",
            "--n-sequences",
            "3",
            "--window",
            "100",
            "140",
            "--z",
            "0",
            "--methods",
            "ivw",
            "--out",
            str(out),
            "--no-figures",
            "--no-report",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["model_type"] == "KerasModel" and info["model"]["n_samples"] == 4
    glob = pd.read_csv(out / "global_effects.csv")
    assert {tuple(p) for p in glob[["exposure", "outcome"]].to_numpy()} == {
        kg.CPGENIE_LABELS,
        kg.CPGENIE_LABELS[::-1],
    }
