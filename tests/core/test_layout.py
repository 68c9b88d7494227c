"""The run layout: one name per file and folder; runs written before stage folders took their stages' names are
still read."""

import shutil
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.core.layout import LEGACY_STAGE_FOLDERS, RunLayout
from kest_tasks.orchestration.runner import run_stage, summarize


def test_stage_folders_are_named_after_their_stages(tmp_path):
    run = RunLayout.for_run(str(tmp_path), "manual__2026-01-01T00:00:00+00:00")
    assert run.uri == str(tmp_path / layout.RUNS_FOLDER / "manual__2026-01-01T00_00_00_00_00")
    for spec in stages.STAGES:
        assert run.stage_dir(spec.folder) == f"{run.uri}/{spec.name}"
    assert run.result_file("evaluate") == f"{run.uri}/evaluate/{layout.RESULT_FILE}"


def test_a_legacy_folder_is_used_only_when_the_new_one_is_absent(tmp_path):
    run, legacy = RunLayout(str(tmp_path)), LEGACY_STAGE_FOLDERS[stages.EVALUATE.name]
    (tmp_path / legacy).mkdir()
    assert run.stage_dir(stages.EVALUATE.folder) == str(tmp_path / legacy)
    (tmp_path / stages.EVALUATE.folder).mkdir()
    assert run.stage_dir(stages.EVALUATE.folder) == str(tmp_path / stages.EVALUATE.folder)


def test_version_names_sort_by_export_time_and_are_stable_per_run():
    first, again = layout.version_name("1767225600", "/runs/a"), layout.version_name("1767225600", "/runs/a")
    later = layout.version_name("1767225601", "/runs/a")
    assert first == again and first.startswith("20260101T000000Z-") and later > first
    assert layout.version_name("1767225600", "/runs/b") != first


@pytest.mark.slow
def test_a_run_in_the_old_layout_is_still_reported_and_summarised(iris_run, tmp_path):
    """A run written by kest 0.1 (data/, model/, eval/): its report is redone and its summary read."""
    old = tmp_path / "old-run"
    shutil.copytree(iris_run["summary"]["run_uri"], old)
    for stage, legacy in LEGACY_STAGE_FOLDERS.items():
        (old / stage).rename(old / legacy)
    shutil.rmtree(old / "report")
    (old / layout.SUMMARY_FILE).unlink()
    report = run_stage("report", str(old))
    assert Path(report["report_uri"]).exists()
    assert stages.PREPARE.load(str(old)).rows == 150
    summary = summarize(str(old))
    assert summary["test_metrics"] == iris_run["summary"]["test_metrics"] and summary["blessed"]
    assert not (old / "prepare").exists()  # nothing was written under the new names
