"""report.html: self-contained, with the data summary, training curves, confusion matrix or residuals, the gate
table and the model's destination; published beside the model."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.reporting.report import read_scalars, training_curves
from tests.helpers import regression_csv, run_iris

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Outline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        self._in_heading = tag in ("h1", "h2")
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data)
            self._in_heading = False


def _outline(path: Path) -> _Outline:
    outline = _Outline()
    outline.feed(path.read_text())
    return outline


def _png(image: dict) -> bytes:
    prefix = "data:image/png;base64,"
    assert image["src"].startswith(prefix), "images are embedded, the file stands alone"
    return base64.b64decode(image["src"][len(prefix) :])


def test_classification_report_is_published_beside_the_model(iris_run):
    summary = iris_run["summary"]
    report = Path(summary["report"])
    outline = _outline(report)
    assert outline.headings[1:] == [
        "Data",
        "Drift",
        "Test metrics",
        "Gate",
        "Where the model went",
        "Training",
        "Confusion matrix",
    ]
    assert [image["alt"] for image in outline.images] == ["Training", "Confusion matrix"]
    assert all(_png(image).startswith(PNG_SIGNATURE) for image in outline.images)
    text = report.read_text()
    assert f"published as {summary['published_model']}" in text
    assert re.search(r"<td>accuracy</td><td>value</td><td>[01][.0-9]*</td><td></td><td>≥ 0.9</td><td>pass</td>", text)
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    published = Path(summary["published_model"]) / layout.REPORT_FILE
    assert published.read_text() == text


def test_the_report_renders_in_headless_chromium(iris_run, tmp_path):
    import matplotlib.image

    chromium = shutil.which("chromium")
    assert chromium, "headless Chromium is needed: `make test` installs Debian's chromium package"
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={screenshot}",
            "--window-size=1200,2400",
            Path(iris_run["summary"]["report"]).as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (2400, 1200)
    inked = (pixels[..., :3] < 0.9).any(axis=-1)
    assert inked.mean() > 0.02, "the page rendered blank"
    assert inked[1200:].mean() > 0.01, "nothing below the tables: the embedded plots did not render"


def test_training_curves_come_from_the_event_files(iris_run):
    model_dir = stages.TRAIN.load(iris_run["summary"]["run_uri"]).model_dir
    train, evaluation = training_curves(model_dir, 100)
    assert [step for step, _ in train["loss"]][:2] == [1, 101]  # the Estimator logs loss every log_steps
    assert {"accuracy", "loss"} <= set(evaluation) and evaluation["accuracy"][-1][0] == 500
    assert read_scalars(f"{model_dir}/no-such-folder") == {}


def test_regression_report_has_a_residual_plot(tmp_path):
    data = regression_csv(tmp_path / "prices.csv")
    summary = run_iris(
        tmp_path,
        dataset={"path": str(data), "label": "price"},
        model={"builder": "tabular"},
        trainer={"kind": "native", "steps": 200},
        thresholds={"rmse": {"upper": 1e9}},
    )
    outline = _outline(Path(summary["report"]))
    assert [image["alt"] for image in outline.images] == ["Training", "Residuals"]
    assert all(_png(image).startswith(PNG_SIGNATURE) for image in outline.images)
