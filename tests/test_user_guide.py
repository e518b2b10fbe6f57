"""docs/user-guide.md against the project: every registered pipeline is described, every command names
a registered pipeline and a real DVC stage, and every link resolves."""

from __future__ import annotations

import re

import yaml

from tests.kedro_helpers import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "user-guide.md"


def _registered() -> set[str]:
    from kedro.framework.project import configure_project

    from skeleton_attention.pipeline_registry import register_pipelines

    configure_project("skeleton_attention")
    return set(register_pipelines())


def test_every_registered_pipeline_has_a_row_in_the_guide_and_every_command_runs_one():
    text = GUIDE.read_text()
    registered = _registered()
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert registered <= rows, f"pipelines missing from docs/user-guide.md section 4: {sorted(registered - rows)}"
    assert rows <= registered, f"rows for pipelines that are not registered: {sorted(rows - registered)}"
    named = {name for group in re.findall(r"--pipelines=([a-z_,]+)", text) for name in group.split(",")}
    assert named and named <= registered, sorted(named - registered)


def test_the_guides_dvc_stages_exist_and_its_links_resolve():
    text = GUIDE.read_text()
    stages = set(yaml.safe_load((REPO_ROOT / "real/dvc.yaml").read_text())["stages"])
    cited = set(re.findall(r"real/dvc\.yaml:([a-z0-9_]+)", text)) | set(re.findall(r":(train_[a-z0-9_]+)\b", text))
    assert cited and cited <= stages, sorted(cited - stages)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        assert (GUIDE.parent / target).is_file(), f"broken link {target}"
    assert "docs/user-guide.md" in (REPO_ROOT / "README.md").read_text()
