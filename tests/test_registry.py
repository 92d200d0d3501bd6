"""Adapter registry: decorator, lookup by name and pattern, entry-point plugins (lazy, errors not
fatal), and the lines `deepmr adapters` prints."""

import sys
from importlib import metadata

import pytest

from deepmr_kipoi import registry
from deepmr_kipoi.registry import Registry

SHIPPED = {"kipoi-generic", "DeepSEA", "Basset", "BPNet-OSKN"}


def _load(request):
    return request


def test_register_and_lookup():
    reg = Registry(group=None)
    reg.register("Family", _load, description="a family", patterns=("Family/*",))
    reg.register("Family/special", _load, description="one member")
    assert reg.get("Family/x").name == "Family"
    assert reg.get("Family/special").name == "Family/special"  # exact name beats pattern
    assert reg.get("Other") is None
    assert [a.name for a in reg.list()] == ["Family", "Family/special"]
    with pytest.raises(
        ValueError, match="no adapter named 'nope'; registered: Family, Family/special"
    ):
        reg.get_by_name("nope")


def test_most_specific_pattern_then_newest_wins():
    reg = Registry(group=None)
    reg.register("broad", _load, patterns=("DeepSEA/*",))
    reg.register("narrow", _load, patterns=("DeepSEA/beluga",))
    reg.register("broad2", _load, patterns=("DeepSEA/*",))
    assert reg.get("DeepSEA/beluga").name == "narrow"
    assert reg.get("DeepSEA/predict").name == "broad2"


def test_decorator_registers_in_default_registry_and_description_from_docstring():
    @registry.register_adapter("deepmr-test-decorated", patterns=("MyLab/*",))
    def load(request):
        """My lab's CNN: 12 ChIP features.

        More text."""
        return request

    try:
        info = registry.get_adapter("MyLab/cnn_v2")
        assert info.name == "deepmr-test-decorated"
        assert info.description == "My lab's CNN: 12 ChIP features."
        assert info.load is load
        assert info.origin == __name__
        assert any(
            line.startswith("deepmr-test-decorated") for line in registry.describe_adapters()
        )
    finally:
        registry.unregister_adapter("deepmr-test-decorated")
    assert registry.get_adapter("MyLab/cnn_v2") is None


def test_replace_false_refuses_duplicates():
    reg = Registry(group=None)
    reg.register("A", _load)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("A", _load, replace=False)
    with pytest.raises(ValueError, match="must be callable"):
        reg.register("B", "not a function")


def test_shipped_adapters_come_from_the_installed_entry_points():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert eps["deepsea"] == "model_adapters.deepsea"
    names = {a.name for a in registry.list_adapters()}
    assert SHIPPED <= names
    assert registry.get_adapter("DeepSEA/beluga").name == "DeepSEA"
    assert registry.get_adapter("BPNet-OSKN").name == "BPNet-OSKN"
    assert registry.get_adapter("Basset").name == "Basset"
    assert registry.get_adapter("SomeOther/model") is None  # -> load_model uses kipoi-generic
    lines = registry.describe_adapters()
    assert any(line.startswith("DeepSEA ") and "DeepSEA/beluga" in line for line in lines)
    assert registry.plugin_errors() == []


def test_listing_adapters_does_not_import_frameworks():
    import subprocess

    code = (
        "import sys\n"
        "from deepmr_kipoi import registry\n"
        "assert len(registry.list_adapters()) >= 4\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'kipoi') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_broken_plugin_is_reported_not_fatal(tmp_path, monkeypatch):
    registry.list_adapters()  # the default registry loads the real plugins before the patch below
    (tmp_path / "deepmr_test_good_plugin.py").write_text(
        "from deepmr_kipoi.registry import register_adapter\n"
        "@register_adapter('deepmr-test-plugin', description='from a plugin')\n"
        "def load(request):\n"
        "    return 'loaded ' + request\n"
    )
    (tmp_path / "deepmr_test_bad_plugin.py").write_text("raise RuntimeError('plugin is broken')\n")
    (tmp_path / "deepmr_test_func_plugin.py").write_text(
        "def load(request):\n    '''a bare adapter function'''\n    return request\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    group = "deepmr_kipoi.adapters"
    entry_points = [
        metadata.EntryPoint("bad", "deepmr_test_bad_plugin", group),
        metadata.EntryPoint("good", "deepmr_test_good_plugin", group),
        metadata.EntryPoint("func", "deepmr_test_func_plugin:load", group),
    ]
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: entry_points)
    reg = Registry(group=group)
    # plugins load lazily, on first lookup; the decorator in the good plugin registers into the
    # default registry, the bare function into this one
    assert reg.get("func").description == "a bare adapter function"
    try:
        assert registry.get_adapter("deepmr-test-plugin").load("x") == "loaded x"
        errors = reg.plugin_errors()
        assert len(errors) == 1
        assert errors[0].entry_point == "bad = deepmr_test_bad_plugin"
        assert "RuntimeError: plugin is broken" in errors[0].error
        assert reg.describe()[-1] == (
            "plugin failed to load: bad = deepmr_test_bad_plugin: RuntimeError: plugin is broken"
        )
    finally:
        registry.unregister_adapter("deepmr-test-plugin")


def test_custom_adapter_example_runs_by_name(capsys):
    import importlib.util
    import os

    pytest.importorskip("torch")
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "custom_adapter.py")
    spec = importlib.util.spec_from_file_location("deepmr_example_custom_adapter", path)
    example = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(example)  # registers the "ToyMotifCNN" adapter
        assert registry.get_adapter("ToyMotifCNN").description == "toy AP-1/E-box CNN; MC dropout"
        assert example.main(["--n-sequences", "3"]) == 0
    finally:
        registry.unregister_adapter("ToyMotifCNN")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    estimate = float(last.split("(IVW): ")[1].split(";")[0])
    assert abs(estimate - 0.8) < 0.05  # the effect built into the toy model
