from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import app
from policies.loader import DEFAULT_DIR, PolicyError, load_policies
from policies.taxonomy import Category, Intent, Urgency


def test_default_policies_are_valid_and_complete() -> None:
    p = load_policies()
    assert {i.value for i in p.taxonomy.intents} == {i.value for i in Intent}
    assert {c.value for c in p.taxonomy.categories} == {c.value for c in Category}
    assert {u.value for u in p.sla.urgencies} == {u.value for u in Urgency}
    assert len(p.grids.communities) >= 2
    assert sum(len(c.grids) for c in p.grids.communities) >= 10
    assert p.grids.grid_for("芙蓉小区", 1) == "FU01"


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    target.mkdir()
    for f in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(f, target / f.name)
    return target


def _edit(folder: Path, name: str, fn) -> None:
    path = folder / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "edit", "expected"),
    [
        ("sla.yaml", lambda d: d["urgencies"]["normal"].update(response="soon"), "sla.yaml: urgencies.normal.response"),
        ("sla.yaml", lambda d: d["urgencies"].pop("urgent"), "sla.yaml"),
        ("sla.yaml", lambda d: d["urgencies"]["urgent"].update(clock="lunar"), "unknown clock"),
        ("sla.yaml", lambda d: d["urgencies"]["urgent"].update(reminders=[0.8, 0.5]), "urgencies.urgent.reminders"),
        ("taxonomy.yaml", lambda d: d["intents"].pop("wish"), "taxonomy.yaml"),
        ("taxonomy.yaml", lambda d: d["categories"].update(aliens={"name": "外星人", "definition": "x"}),
         "taxonomy.yaml: categories.aliens"),
        ("routing.yaml", lambda d: d["rules"][0].update(role="wizard"), "routing.yaml: rules.0.role"),
        ("grids.yaml", lambda d: d["communities"][0]["grids"][1]["covers"][0].update(buildings="1-3"), "grids.yaml"),
        ("grids.yaml", lambda d: d["communities"][0]["grids"][0].update(id="bad id"),
         "grids.yaml: communities.0.grids.0.id"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path: Path, file: str, edit, expected: str) -> None:
    folder = _copy(tmp_path)
    _edit(folder, file, edit)
    with pytest.raises(PolicyError) as info:
        load_policies(folder)
    assert any(expected in line for line in info.value.problems), info.value.problems


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "routing.yaml").write_text("default:\n  role: [full_time\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policies(folder)
    assert info.value.problems[0].startswith("routing.yaml (line")


def test_missing_file(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "grids.yaml").unlink()
    with pytest.raises(PolicyError, match=r"grids\.yaml: file is missing"):
        load_policies(folder)


def test_cli_policies_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok = CliRunner().invoke(app, ["policies", "check"])
    assert ok.exit_code == 0, ok.output
    assert "校验通过" in ok.output and "13 个网格" in ok.output
    folder = _copy(tmp_path)
    _edit(folder, "sla.yaml", lambda d: d["urgencies"]["normal"].update(response="soon"))
    monkeypatch.setenv("POLICIES_DIR", str(folder))
    bad = CliRunner().invoke(app, ["policies", "check"])
    assert bad.exit_code == 1
    assert "sla.yaml: urgencies.normal.response" in bad.output
    assert "Traceback" not in bad.output


def test_cli_db_upgrade_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    for _ in range(2):
        out = CliRunner().invoke(app, ["db", "upgrade"])
        assert out.exit_code == 0, out.output
        assert "65 名人员" in out.output  # 61 + the 微心愿 wall's 2 volunteers and 2 party members
