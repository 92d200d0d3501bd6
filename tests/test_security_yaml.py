"""Model descriptions with Python tags: nothing a model's YAML names runs unless the user trusts it.

Each layout below hides a command (``touch MARKER``) somewhere Kipoi reads for a model: the model's
own ``model.yaml``/``model.yml``, a dataloader folder that ``default_dataloader`` points to
(below, beside or far from the model folder), a ``conda_file``, a zoo group's template, a
``models.tsv`` cell the template inserts, Jinja2 template code, a dataloader group. For every
layout the test shows both halves:

* Kipoi's own readers, called the way ``kipoi.get_model`` calls them, do run the command (the
  layout is a real way in);
* every ``deepmr`` entry point refuses the model first, in one line naming the file, and the
  marker file is never created.

The scanner itself is checked on YAML texts (tags in keys, behind aliases, through ``%TAG``
directives, in several documents) and on texts that merely mention a tag.
"""

import os
import textwrap
from pathlib import Path

import pytest

from deepmr_kipoi import cli, pipeline
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models.files import check_model_yaml, model_code_files, python_tag

TAG = '!!python/object/apply:os.system ["touch {marker}"]'

MODEL_YAML = """\
defined_as: kipoi.model.PyTorchModel
args:
  module_file: net.py
  module_class: Net
  weights: weights.pth
default_dataloader: {dl}
info:
  authors:
    - name: t
  doc: {doc}
{extra}schema:
  inputs:
    name: seq
    shape: (4, 40)
    doc: one-hot DNA
  targets:
    name: out
    shape: (2,)
    doc: two outputs
"""

DATALOADER_YAML = """\
defined_as: dataloader.Dl
args:
  fasta_file:
    doc: a FASTA file
info:
  authors:
    - name: t
  doc: {doc}
{extra}output_schema:
  inputs:
    name: seq
    shape: (4, 40)
    doc: one-hot DNA
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _model(folder: Path, dl=".", doc="a model", extra="", name="model.yaml") -> Path:
    _write(folder / name, MODEL_YAML.format(dl=dl, doc=doc, extra=extra))
    _write(folder / "net.py", "class Net:\n    pass\n")
    return folder


def _dataloader(folder: Path, doc="a dataloader", extra="", name="dataloader.yaml") -> Path:
    return _write(folder / name, DATALOADER_YAML.format(doc=doc, extra=extra))


def _conda(tag):
    return (
        "dependencies:\n  conda_file: env.yaml\n",
        f"channels: [defaults]\ndependencies:\n  - {tag}\n",
    )


# Each layout: (tmp, marker) -> (model name or folder, source or None, file the refusal names)
def _model_yaml(tmp, m):
    return _model(tmp / "m", doc=TAG.format(marker=m)), None, "m/model.yaml"


def _model_yml(tmp, m):
    return _model(tmp / "m", doc=TAG.format(marker=m), name="model.yml"), None, "m/model.yml"


def _dl_below(tmp, m):  # the probe's case
    _dataloader(tmp / "m" / "sub", doc=TAG.format(marker=m))
    return _model(tmp / "m", dl="sub"), None, "sub/dataloader.yaml"


def _dl_below_yml(tmp, m):
    _dataloader(tmp / "m" / "sub", doc=TAG.format(marker=m), name="dataloader.yml")
    return _model(tmp / "m", dl="sub"), None, "sub/dataloader.yml"


def _dl_deeper(tmp, m):
    _dataloader(tmp / "m" / "a" / "b", doc=TAG.format(marker=m))
    return _model(tmp / "m", dl="a/b"), None, "a/b/dataloader.yaml"


def _dl_sibling(tmp, m):
    _dataloader(tmp / "shared_dl", doc=TAG.format(marker=m))
    return _model(tmp / "m", dl="../shared_dl"), None, "shared_dl/dataloader.yaml"


def _dl_absolute(tmp, m):
    _dataloader(tmp / "elsewhere" / "dl", doc=TAG.format(marker=m))
    return _model(tmp / "m", dl=str(tmp / "elsewhere" / "dl")), None, "elsewhere/dl/dataloader.yaml"


def _dl_same_folder(tmp, m):
    _dataloader(tmp / "m", doc=TAG.format(marker=m))
    return _model(tmp / "m"), None, "m/dataloader.yaml"


def _dl_tag_in_args(tmp, m):
    _dataloader(tmp / "m" / "sub", extra=f"dependencies:\n  pip: [{TAG.format(marker=m)}]\n")
    return _model(tmp / "m", dl="sub"), None, "sub/dataloader.yaml"


def _model_conda(tmp, m):
    extra, env = _conda(TAG.format(marker=m))
    _write(tmp / "m" / "env.yaml", env)
    return _model(tmp / "m", extra=extra), None, "m/env.yaml"


def _dl_conda(tmp, m):
    extra, env = _conda(TAG.format(marker=m))
    _write(tmp / "m" / "sub" / "env.yaml", env)
    _dataloader(tmp / "m" / "sub", extra=extra)
    return _model(tmp / "m", dl="sub"), None, "sub/env.yaml"


def _group_template(tmp, m):
    text = MODEL_YAML.format(dl=".", doc=TAG.format(marker=m), extra="")
    _write(tmp / "zoo" / "grp" / "model-template.yaml", text)
    _write(tmp / "zoo" / "grp" / "models.tsv", "model\tlabel\nm1\tx\n")
    return "grp/m1", str(tmp / "zoo"), "grp/model-template.yaml"


def _group_tsv_cell(tmp, m):
    _write(
        tmp / "zoo" / "grp" / "model-template.yaml",
        MODEL_YAML.format(dl=".", doc="{{ doc }}", extra=""),
    )
    _write(tmp / "zoo" / "grp" / "models.tsv", f"model\tdoc\nm1\t{TAG.format(marker=m)}\n")
    return "grp/m1", str(tmp / "zoo"), "rendered for m1"


def _group_jinja(tmp, m):
    doc = "{{ cycler.__init__.__globals__.os.system('touch " + str(m) + "') }}"
    _write(
        tmp / "zoo" / "grp" / "model-template.yaml", MODEL_YAML.format(dl=".", doc=doc, extra="")
    )
    _write(tmp / "zoo" / "grp" / "models.tsv", "model\tlabel\nm1\tx\n")
    return "grp/m1", str(tmp / "zoo"), "reaches into Python objects"


def _dl_group(tmp, m):
    dl_doc = "{{ doc }}"
    _write(
        tmp / "zoo" / "dls" / "dataloader-template.yaml",
        DATALOADER_YAML.format(doc=dl_doc, extra=""),
    )
    _write(tmp / "zoo" / "dls" / "models.tsv", f"model\tdoc\nd1\t{TAG.format(marker=m)}\n")
    _model(tmp / "zoo" / "mods" / "m1", dl="../../dls/d1")
    return "mods/m1", str(tmp / "zoo"), "dls/dataloader-template.yaml"


def _source_config(tmp, m):
    _write(tmp / "zoo" / "config.yaml", f"dependencies:\n  pip: [{TAG.format(marker=m)}]\n")
    _model(tmp / "zoo" / "m")
    return "m", str(tmp / "zoo"), "zoo/config.yaml"


def _source_config_unknown_model(tmp, m):
    # the source's config.yaml is read as the source is made, before any model is looked up
    _source_config(tmp, m)
    return "no_such_model", str(tmp / "zoo"), "zoo/config.yaml"


def _group_template_yml_first(tmp, m):
    # Kipoi reads model-template.yml before model-template.yaml
    text = MODEL_YAML.format(dl=".", doc=TAG.format(marker=m), extra="")
    _write(tmp / "zoo" / "grp" / "model-template.yml", text)
    _write(
        tmp / "zoo" / "grp" / "model-template.yaml", MODEL_YAML.format(dl=".", doc="ok", extra="")
    )
    _write(tmp / "zoo" / "grp" / "models.tsv", "model\tlabel\nm1\tx\n")
    return "grp/m1", str(tmp / "zoo"), "grp/model-template.yml"


LAYOUTS = {
    "source_config": _source_config,
    "source_config_unknown_model": _source_config_unknown_model,
    "group_template_yml_first": _group_template_yml_first,
    "model_yaml": _model_yaml,
    "model_yml": _model_yml,
    "dataloader_below": _dl_below,
    "dataloader_below_yml": _dl_below_yml,
    "dataloader_deeper": _dl_deeper,
    "dataloader_sibling": _dl_sibling,
    "dataloader_absolute": _dl_absolute,
    "dataloader_same_folder": _dl_same_folder,
    "dataloader_tag_in_dependencies": _dl_tag_in_args,
    "model_conda_file": _model_conda,
    "dataloader_conda_file": _dl_conda,
    "group_template": _group_template,
    "group_tsv_cell": _group_tsv_cell,
    "group_jinja_code": _group_jinja,
    "dataloader_group": _dl_group,
}


def _build(name, tmp_path):
    marker = tmp_path / "ran"
    model, source, names = LAYOUTS[name](tmp_path, marker)
    return str(model), source, names, marker


def _kipoi_reads(model: str, source):
    """What Kipoi reads before any model code: the model's description, then its default
    dataloader's description, relative to the model's name in its source (``kipoi.get_model``) or
    to the model's folder (Kipoi's dataloader readers as describing a model calls them)."""
    import kipoi

    from deepmr_kipoi.kipoi_models.sources import resolve

    name, _, src = resolve(model, source, trust_model_code=True)  # Kipoi's own reading
    md = src.get_model_descr(name)
    dl = md.default_dataloader
    if isinstance(dl, str):
        for path, where in (
            (os.path.join("/" + name, dl)[1:], src),
            (os.path.join(src.get_model_dir(name), dl), "dir"),
        ):
            try:
                kipoi.get_dataloader_descr(path, where)
            except Exception:  # noqa: BLE001 - not a loadable dataloader; the command ran first
                pass


#: Kipoi reads a conda file with PyYAML's FullLoader, which builds no objects by calling them: tags
#: there are refused all the same (nothing in a model's YAML needs one), but they run nothing.
NOT_RUN_BY_KIPOI = ("model_conda_file", "dataloader_conda_file")


@pytest.mark.parametrize("layout", sorted(set(LAYOUTS) - set(NOT_RUN_BY_KIPOI)))
def test_kipoi_itself_runs_the_hidden_command(layout, tmp_path, monkeypatch):
    """Without the check the command runs: each layout is a real way in."""
    model, source, _, marker = _build(layout, tmp_path)
    monkeypatch.chdir(tmp_path / ("zoo" if source else "m"))
    try:
        _kipoi_reads(model, source)
    except Exception:  # noqa: BLE001 - the descriptions are not loadable models; the command ran first
        pass
    assert marker.exists()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_describe_refuses_before_kipoi_reads(layout, tmp_path):
    from deepmr_kipoi.kipoi_models import describe_model

    model, source, names, marker = _build(layout, tmp_path)
    with pytest.raises(DeepMRInputError) as info:
        describe_model(model, source=source)
    message = str(info.value)
    assert "\n" not in message and names in message and "--trust-model-code" in message
    assert not marker.exists()


ENTRY_POINTS = {
    "load_model": lambda model, source, out: __import__(
        "deepmr_kipoi.kipoi_models"
    ).kipoi_models.load_model(model, source=source),
    "dataloader_sequences": lambda model, source, out: __import__(
        "deepmr_kipoi.kipoi_models"
    ).kipoi_models.dataloader_sequences(model, source=source),
    "pipeline_run": lambda model, source, out: pipeline.run(
        pipeline.RunConfig(model=model, source=source, out=str(out), progress=False)
    ),
    "pipeline_run_dataloader": lambda model, source, out: pipeline.run(
        pipeline.RunConfig(
            model=model, source=source, sequences="dataloader", out=str(out), progress=False
        )
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    "layout", ["dataloader_below", "group_tsv_cell", "dataloader_group", "source_config"]
)
def test_every_entry_point_refuses(entry, layout, tmp_path):
    model, source, names, marker = _build(layout, tmp_path)
    with pytest.raises(DeepMRInputError) as info:
        ENTRY_POINTS[entry](model, source, tmp_path / "out")
    assert "\n" not in str(info.value) and names in str(info.value)
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "layout",
    [
        "dataloader_below",
        "dataloader_sibling",
        "group_jinja_code",
        "source_config",
        "source_config_unknown_model",
    ],
)
def test_cli_run_refuses_in_one_line_and_writes_nothing(layout, tmp_path, capsys):
    model, source, names, marker = _build(layout, tmp_path)
    argv = ["run", "--model", model, "--out", str(tmp_path / "out"), "--quiet"]
    argv += ["--source", source] if source else []
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0] and "--trust-model-code" in err[0], err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_trust_model_code_lets_kipoi_read_it(tmp_path, capsys):
    """The probe's layout with --trust-model-code: the check steps aside and Kipoi runs the tag."""
    model, _, _, marker = _build("dataloader_below", tmp_path)
    cli.main(
        [
            "run",
            "--model",
            model,
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--trust-model-code",
            "--sequences",
            "dataloader",
        ]
    )
    capsys.readouterr()
    assert marker.exists()


# ---- the scanner on texts ------------------------------------------------------------------------

SCANNED = [
    ("value", "a: !!python/object/apply:os.system ['x']\n", ("!!python/object/apply:os.system", 1)),
    ("key", "? !!python/name:os.system\n: 1\n", ("!!python/name:os.system", 1)),
    ("nested_list", "a:\n  b:\n    - 1\n    - !!python/tuple [1, 2]\n", ("!!python/tuple", 4)),
    ("behind_alias", "x: &a [1, !!python/none '']\ny: *a\n", ("!!python/none", 1)),
    (
        "tag_directive",
        "%TAG !py! tag:yaml.org,2002:python/\n---\na: !py!object/new:os.system ['x']\n",
        ("!!python/object/new:os.system", 3),
    ),
    ("second_document", "a: 1\n---\nb: !!python/module:os\n", ("!!python/module:os", 3)),
    (
        "verbatim_tag",
        "a: !<tag:yaml.org,2002:python/object:os.Foo> {}\n",
        ("!!python/object:os.Foo", 1),
    ),
    ("flow_mapping", "{a: {b: !!python/bytes 'eA=='}}\n", ("!!python/bytes", 1)),
    ("quoted_mention", "a: '!!python/object/apply:os.system'\n", None),
    ("comment_mention", "a: 1  # !!python/object/apply:os.system\n", None),
    ("safe_tags", "a: !!str 1\nb: !!int '2'\nc: !!binary aGk=\nd: !!float 1\ne: !!set {x}\n", None),
    (
        "alias_bomb",
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi")
        ),
        None,
    ),
]


@pytest.mark.parametrize("case,text,expected", SCANNED, ids=[c[0] for c in SCANNED])
def test_python_tag_scanner(case, text, expected):
    assert python_tag(text, "t.yaml") == expected


@pytest.mark.parametrize("text", ["a: [1,\n", "a: b: c\n", "- a\nb: 1\n"])
def test_invalid_yaml_is_one_line(text):
    with pytest.raises(DeepMRInputError, match="t.yaml is not valid YAML") as info:
        python_tag(text, "t.yaml")
    assert "\n" not in str(info.value)


def test_a_clean_model_passes_and_its_code_is_listed(tmp_path):
    _dataloader(tmp_path / "m" / "sub")
    _write(tmp_path / "m" / "sub" / "dataloader.py", "class Dl:\n    pass\n")
    _write(tmp_path / "m" / "helpers" / "layers.py", "X = 1\n")
    _write(
        tmp_path / "m" / "downloaded" / "model_files" / "weights" / "x.py",
        "not code of the model\n",
    )
    model = _model(tmp_path / "m", dl="sub", doc="!!str plain text")
    checked = check_model_yaml(str(model), None, "dir")
    assert sorted(checked) == [str(model / "model.yaml"), str(model / "sub" / "dataloader.yaml")]
    rel = [os.path.relpath(f, model) for f in model_code_files(str(model), None, "dir")]
    assert rel == [
        "helpers/layers.py",
        "model.yaml",
        "net.py",
        "sub/dataloader.py",
        "sub/dataloader.yaml",
    ]


def test_group_member_code_lists_template_and_table(tmp_path):
    _group_tsv_cell(tmp_path, "unused")
    (tmp_path / "zoo" / "grp" / "models.tsv").write_text("model\tdoc\nm1\tplain\n")
    from kipoi.sources import LocalSource

    src = LocalSource(str(tmp_path / "zoo"))
    files = model_code_files("grp/m1", src, str(tmp_path / "zoo"))
    assert [os.path.relpath(f, tmp_path / "zoo") for f in files] == [
        "grp/model-template.yaml",
        "grp/models.tsv",
    ]


def test_rendered_template_is_what_is_scanned(tmp_path):
    """A tag only a models.tsv cell brings in is found; the same template with a plain cell passes."""
    text = textwrap.dedent(MODEL_YAML.format(dl=".", doc="{{ doc }}", extra=""))
    _write(tmp_path / "zoo" / "grp" / "model-template.yaml", text)
    _write(
        tmp_path / "zoo" / "grp" / "models.tsv", "model\tdoc\nok\tplain\nbad\t!!python/none ''\n"
    )
    from kipoi.sources import LocalSource

    src = LocalSource(str(tmp_path / "zoo"))
    assert check_model_yaml("grp/ok", src, "zoo") == [
        str(tmp_path / "zoo" / "grp" / "model-template.yaml"),
        str(tmp_path / "zoo" / "grp" / "models.tsv"),
    ]
    with pytest.raises(DeepMRInputError, match="rendered for bad"):
        check_model_yaml("grp/bad", src, "zoo")


def test_a_local_source_registered_by_name_is_checked_first(tmp_path):
    from deepmr_kipoi.kipoi_models import add_local_source

    model, source, names, marker = _build("source_config", tmp_path)
    with pytest.raises(DeepMRInputError, match="config.yaml") as info:
        add_local_source("zoo_with_tag", source)
    assert "\n" not in str(info.value) and not marker.exists()


def test_only_the_files_kipoi_reads_are_scanned_and_size_is_not_time(tmp_path):
    """A 5 MB YAML file Kipoi never reads is not opened; one it reads is scanned by libyaml."""
    import time

    big = "".join(f"- {{k: v{i}, n: {i}, s: 'some text here {i}'}}\n" for i in range(100_000))
    model = _model(tmp_path / "m")
    _write(model / "annotations.yaml", big + "- !!python/none ''\n")  # never read by Kipoi
    _write(
        model / "env.yaml",
        "dependencies:\n" + "".join("  " + line + "\n" for line in big.splitlines()),
    )
    (model / "model.yaml").write_text(
        (model / "model.yaml").read_text() + "dependencies:\n  conda_file: env.yaml\n"
    )
    assert len(big) > 5_000_000
    start = time.perf_counter()
    checked = check_model_yaml(str(model), None, "dir")
    elapsed = time.perf_counter() - start
    assert sorted(os.path.relpath(f, model) for f in checked) == ["env.yaml", "model.yaml"]
    assert elapsed < 20, elapsed  # the pure-Python composer took minutes on 5 MB


def test_a_tag_in_a_big_file_kipoi_reads_is_found(tmp_path):
    model = _model(tmp_path / "m")
    marker = tmp_path / "ran"
    filler = "".join(f"- item {i}\n" for i in range(200_000))
    _write(
        model / "env.yaml",
        "dependencies:\n"
        + "".join("  " + line + "\n" for line in filler.splitlines())
        + f"  - {TAG.format(marker=marker)}\n",
    )
    (model / "model.yaml").write_text(
        (model / "model.yaml").read_text() + "dependencies:\n  conda_file: env.yaml\n"
    )
    with pytest.raises(DeepMRInputError, match=r"env.yaml \(line 200002\)"):
        check_model_yaml(str(model), None, "dir")


# ---- the Kipoi configuration: sources Kipoi makes when it is imported --------------------------


def _configured_source(home: Path, tmp: Path, m: Path) -> str:
    _write(tmp / "zoo" / "config.yaml", f"dependencies:\n  pip: [{TAG.format(marker=m)}]\n")
    _write(
        home / ".kipoi" / "config.yaml",
        f"model_sources:\n  zoo:\n    type: local\n    local_path: {tmp / 'zoo'}\n",
    )
    return str(tmp / "zoo" / "config.yaml")


def _default_zoo_clone(home: Path, tmp: Path, m: Path) -> str:
    # no configuration: Kipoi makes its default git source on its clone at ~/.kipoi/models
    path = home / ".kipoi" / "models" / "config.yaml"
    _write(path, f"dependencies:\n  pip: [{TAG.format(marker=m)}]\n")
    return str(path)


def _kipoi_config_itself(home: Path, tmp: Path, m: Path) -> str:
    path = home / ".kipoi" / "config.yaml"
    _write(path, f"model_sources: {{}}\nnote: {TAG.format(marker=m)}\n")
    return str(path)


KIPOI_CONFIGURATIONS = {
    "configured_local_source": _configured_source,
    "default_zoo_clone": _default_zoo_clone,
    "kipoi_config_itself": _kipoi_config_itself,
}


@pytest.mark.parametrize("layout", sorted(KIPOI_CONFIGURATIONS))
def test_the_kipoi_configuration_is_checked_before_kipoi_is_imported(layout, tmp_path):
    """A fresh process (Kipoi not yet imported) with HOME holding the layout: ``deepmr info`` on a
    clean model refuses in one line naming the file; trusted, Kipoi's import runs the tag."""
    import subprocess
    import sys

    home, marker = tmp_path / "home", tmp_path / "ran"
    named = KIPOI_CONFIGURATIONS[layout](home, tmp_path, marker)
    model = _model(tmp_path / "m")
    env = {**os.environ, "HOME": str(home)}
    argv = [sys.executable, "-m", "deepmr_kipoi.cli", "info", str(model)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    err = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, done.stderr
    assert len(err) == 1 and named in err[0] and "--trust-model-code" in err[0], err
    assert not marker.exists()
    subprocess.run(
        [*argv, "--trust-model-code"], env=env, capture_output=True, text=True, timeout=300
    )
    assert marker.exists()  # the layout is a real way in: Kipoi's import runs the tag


def test_a_trusted_run_keys_the_code_of_a_model_in_a_tagged_source(tmp_path):
    """--trust-model-code with a source whose config.yaml has a tag: the model's code is in the
    resume key (it was left out when the fingerprint resolved the source untrusted)."""
    from deepmr_kipoi.run.fingerprint import code_fingerprint

    model, source, _, _ = _build("source_config", tmp_path)
    before = code_fingerprint(model, source, kipoi=True, trust_model_code=True)
    assert {"model code model.yaml", "model code net.py"} <= set(before), before
    _write(tmp_path / "zoo" / "m" / "net.py", "class Net:\n    x = 2\n")
    after = code_fingerprint(model, source, kipoi=True, trust_model_code=True)
    assert after["model code net.py"] != before["model code net.py"]
    assert after["model code model.yaml"] == before["model code model.yaml"]
