"""The plug-in layer in one process: a package declares a model kind and a stage
by entry point; the repository, registry, plans and stage runner take them as
they are (tests/plugins/ocrq_demo_plugin, installed with pip)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from ocrq.cli import main
from ocrq.engine import Engine
from ocrq.errors import ModelIntegrityError
from ocrq.models.builtin import catalog, model_spec
from ocrq.models.repository import ModelRepository
from ocrq.plans import InvalidPlans, Plans
from ocrq.plugin_stages import run_stages
from ocrq.plugins import Catalog, Plugin, PluginError
from ocrq.settings import Settings
from tests.plugin_env import pip_install, plugin_on_path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(tmp_path_factory.mktemp("plugin"))


@pytest.fixture
def demo(installed: Path) -> Iterator[Path]:
    with plugin_on_path(installed) as path:
        yield path


def test_without_the_plugin_its_names_are_unknown() -> None:
    assert "ink" not in catalog().kinds and "inkstats" not in catalog().stages


def test_the_catalog_holds_built_in_and_plugin_kinds_and_stages(demo: Path) -> None:
    cat = catalog()
    assert {"rot", "std", "dir", "str", "ink"} <= set(cat.kinds)
    assert cat.origin["kind:ink"] == "demo" and cat.origin["kind:str"] == "ocrq"
    assert cat.stages["inkstats"].models == ("ink",)


def test_version_1_is_made_pinned_and_loaded_like_any_model(demo: Path, tmp_path: Path,
                                                            model_root: Path) -> None:
    repo = ModelRepository(tmp_path)
    repo.ensure_defaults([model_spec("ink")])
    manifest = repo.manifest("ink", 1)
    assert manifest.weights == "rules.json" and manifest.runtime == "json"
    assert json.loads(manifest.weights_path.read_text()) == {"dark_below": 128}
    engine = Engine.from_settings(Settings(model_root=model_root, threads=1))
    engine.registry.repository.ensure_defaults([model_spec("ink")])
    assert engine.registry.get("ink").runtime == {"dark_below": 128}
    # A changed maker is refused before anything is written.
    bad = dataclasses.replace(model_spec("ink"), make=lambda: b'{"dark_below": 1}')
    with pytest.raises(ModelIntegrityError, match="sha256"):
        ModelRepository(tmp_path / "other").ensure_defaults([bad])
    assert not (tmp_path / "other" / "ink").exists()


def test_a_plan_runs_the_plugin_stage_after_the_page_is_read(demo: Path, model_root: Path,
                                                            invoice_page) -> None:
    plans = Plans({"tids": {"ink": {"steps": ["detect", "recognize", "reorder",
                                              {"step": "inkstats",
                                               "options": {"label": "x"}}]}}})
    step = plans.resolve(None, "ink").step("inkstats")
    assert step is not None and step.hardware == "cpu"  # the stage's own default
    engine = Engine.from_settings(Settings(model_root=model_root, threads=1))
    page = engine.run(invoice_page).to_dict()
    doc = run_stages(engine, invoice_page, page, [("inkstats", step.options)])
    assert doc["ink"]["lines"] == len(page["lines"]) > 0
    assert 0 < doc["ink"]["dark_share"] < 0.5 and doc["ink"]["label"] == "x"
    assert doc["models"]["ink"] == 1 and "inkstats" in doc["timings_ms"]
    # Its cost is the page's too (issue 15): a step of its own, in the total.
    cost = doc["cost"]
    assert cost["inkstats"]["cpu_s"] > 0 and cost["inkstats"]["gpu_s"] == 0
    steps = [v for k, v in cost.items() if k != "total"]
    assert set(cost) == {*page["cost"], "inkstats"}
    assert abs(cost["total"]["cpu_s"] - sum(v["cpu_s"] for v in steps)) < 1e-6


def test_plans_refuse_unknown_stages_and_stages_before_reading(demo: Path) -> None:
    with pytest.raises(InvalidPlans, match="unknown step 'nope'.*inkstats"):
        Plans({"tids": {"x": {"steps": ["detect", "recognize", "reorder", "nope"]}}})
    with pytest.raises(InvalidPlans, match="then plug-in stages"):
        Plans({"tids": {"x": {"steps": ["detect", "inkstats", "recognize", "reorder"]}}})


def test_two_plugins_may_not_declare_the_same_name() -> None:
    kind = model_spec("dir")
    with pytest.raises(PluginError, match="'dir' of plug-in 'b' is already declared by 'a'"):
        Catalog.of([Plugin("a", kinds=(kind,)), Plugin("b", kinds=(kind,))])


def test_ocrq_run_with_a_tid_runs_its_plugin_stages(demo: Path, tmp_path: Path,
                                                    model_root: Path, invoice_page) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text("tids:\n  ocr: {steps: [detect, recognize, reorder]}\n"
                     "  ink: {steps: [detect, recognize, reorder, inkstats]}\n")
    image = tmp_path / "page.png"
    cv2.imwrite(str(image), invoice_page)
    env = {"OCRQ_MODEL_ROOT": str(model_root), "OCRQ_PLANS_FILE": str(plans),
           "OCRQ_THREADS": "1"}
    out = CliRunner().invoke(main, ["run", "--json", "--tid", "ink", str(image)], env=env)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["ink"]["lines"] == len(doc["lines"]) > 0 and doc["models"]["ink"] == 1
    plain = CliRunner().invoke(main, ["run", "--json", str(image)], env=env)
    assert "ink" not in json.loads(plain.stdout)  # without --tid: the OCR document only
