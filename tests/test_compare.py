"""``streamlearn compare``: several configs over one stream, one report."""

import base64
import json
import re
import threading

import pytest
import structlog

from streamlearn.cli import main
from streamlearn.engine.compare import run_names
from tests.conftest import write_jsonl

CONFIG = """
[learner]
name = "river"
[learner.params]
model = "{model}"
preprocessing = ["preprocessing.StandardScaler"]
[eval]
metrics = {metrics}
history_every = 50
window = 100
[output]
dead_letters = "out/dead_letters.jsonl"
[checkpoint]
dir = "{checkpoints}"
every_events = 100
"""

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _logging_restored():
    """``main`` configures structlog to print to this test's (captured, later closed)
    stderr; the tests after these must get the logging they had."""
    before = structlog.get_config()
    yield
    structlog.configure(**before)


@pytest.fixture(scope="module")
def stream(phishing_jsonl, tmp_path_factory):
    """400 phishing events, one of them carrying a feature ``die`` (a poison learner exits on it)
    and one that is not JSON (a dead letter)."""
    lines = phishing_jsonl.read_text().splitlines()[:400]
    poisoned = json.loads(lines[300])
    poisoned["x"]["die"] = 1.0
    lines[300] = json.dumps(poisoned)
    lines[10] = "{not json"
    return write_jsonl(tmp_path_factory.mktemp("stream") / "stream.jsonl", lines)


def _config(directory, name, model="linear_model.LogisticRegression", metrics=("Accuracy", "LogLoss")):
    path = directory / f"{name}.toml"
    path.write_text(CONFIG.format(model=model, metrics=json.dumps(list(metrics)), checkpoints=directory / "checkpoints" / name))
    return path


@pytest.fixture(scope="module")
def two(stream, tmp_path_factory):
    """``compare`` of logistic regression and Gaussian naive Bayes, through the CLI."""
    tmp = tmp_path_factory.mktemp("two")
    configs = [_config(tmp, "logreg"), _config(tmp, "gnb", "naive_bayes.GaussianNB")]
    code = main(["compare", *map(str, configs), "--input", str(stream), "--report", str(tmp / "report")])
    return code, tmp / "report", json.loads((tmp / "report" / "report.json").read_text())


def test_compare_writes_a_row_per_learner_with_final_cumulative_and_windowed_metrics(two):
    code, directory, report = two
    assert code == 0
    assert report["failed"] == []
    rows = {r["name"]: r for r in report["learners"]}
    assert list(rows) == ["logreg", "gnb"]
    for name, row in rows.items():
        assert row["status"] == "ok"
        assert row["events"] == 400 and row["dead_letters"] == 1
        assert sum(row["dead_letter_reasons"].values()) == 1
        assert set(row["final_metrics"]) == {"Accuracy", "Accuracy@100", "LogLoss", "LogLoss@100"}
        assert row["events_per_second"] > 0
        assert 10 * 2**20 < row["peak_rss_bytes"] < 8 * 2**30
        # each learner's own replay, with the same final numbers
        own = json.loads((directory / name / "report.json").read_text())
        assert own["final_metrics"] == row["final_metrics"]
        assert len(own["history"]) == 8  # a point every 50 events
        assert (directory / name / "dead_letters.jsonl").read_text().count("\n") == 1
    assert rows["logreg"]["learner"] == "river linear_model.LogisticRegression"
    assert rows["gnb"]["learner"] == "river naive_bayes.GaussianNB"
    assert rows["logreg"]["final_metrics"] != rows["gnb"]["final_metrics"]  # two different learners ran


def test_compare_overlays_every_learners_curves(two):
    _, directory, report = two
    assert report["curves"] == {"file": "curves.png", "runs": ["logreg", "gnb"], "panels": ["Accuracy", "LogLoss"]}
    assert (directory / "curves.png").read_bytes().startswith(PNG)


def test_compare_html_embeds_its_plots_and_loads_nothing_else(two):
    _, directory, report = two
    page = (directory / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3  # the overlay and each learner's own plot
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert base64.b64decode(sources[0].split(",", 1)[1]) == (directory / "curves.png").read_bytes()
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # no file, server or CDN is needed
    assert "<script" not in page
    for name in ("logreg", "gnb"):
        assert f"<td>{name}</td>" in page
    assert f"{report['learners'][0]['final_metrics']['Accuracy@100']:.4g}" in page


def test_compare_starts_each_learner_at_the_first_event_and_ignores_config_checkpoints(two, stream):
    # The configs name checkpoint directories; a comparison writes none, so running it
    # again cannot resume a finished run.
    _, directory, _ = two
    assert not (directory.parent / "checkpoints").exists()


@pytest.fixture(scope="module")
def numeric_stream(stream, tmp_path_factory):
    """The stream with labels 0/1, for regressors (the poison learner is one)."""
    events = []
    for line in stream.read_text().splitlines():
        if line.startswith("{not"):
            events.append(line)
        else:
            event = json.loads(line)
            events.append({**event, "y": int(event["y"])})
    return write_jsonl(tmp_path_factory.mktemp("numeric") / "stream.jsonl", events)


def _poison(directory):
    """A learner whose process exits (like a crash) at the event with feature ``die``."""
    path = directory / "poison.toml"
    path.write_text('[learner]\nname = "tests.poison_learners:ExitOn"\nprocessor = "supervised"\n')
    return path


def test_a_failing_config_is_reported_with_why_and_the_others_still_are(numeric_stream, tmp_path, capsys):
    poison = _poison(tmp_path)
    wrong_format = tmp_path / "wrong_format.toml"
    wrong_format.write_text('[learner]\nname = "river"\n[learner.params]\nmodel = "naive_bayes.GaussianNB"\n[input]\nformat = "parquet"\n')
    misspelled = _config(tmp_path, "misspelled", "linear_model.LogisticRegresion")
    good = _config(tmp_path, "good", "linear_model.LinearRegression", ["MAE"])
    configs = [good, poison, wrong_format, misspelled]
    code = main(["compare", *map(str, configs), "--input", str(numeric_stream), "--report", str(tmp_path / "r"), "--jobs", "2"])
    assert code == 2  # a config is invalid (1 when every config was valid but one failed)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    rows = {r["name"]: r for r in report["learners"]}
    assert rows["good"]["status"] == "ok" and rows["good"]["events"] == 400
    assert rows["poison"]["status"] == "failed"
    assert rows["poison"]["error"] == "the learner's process ended without a result (exit code 13)"
    assert rows["wrong_format"]["status"] == "failed" and "parquet" in rows["wrong_format"]["error"].lower()
    assert rows["misspelled"]["error"].startswith("config error:") and "LogisticRegression" in rows["misspelled"]["error"]
    assert report["failed"] == ["poison", "wrong_format", "misspelled"]
    assert report["curves"]["runs"] == ["good"]
    page = (tmp_path / "r" / "report.html").read_text()
    assert "ended without a result" in page and 'class="failed"' in page
    err = capsys.readouterr().err
    assert "poison" in err and "exit code 13" in err


def test_only_runtime_failures_exit_1(numeric_stream, tmp_path):
    good = _config(tmp_path, "good", "linear_model.LinearRegression", ["MAE"])
    code = main(["compare", str(good), str(_poison(tmp_path)), "--input", str(numeric_stream), "--report", str(tmp_path / "r")])
    assert code == 1


def test_configs_sharing_a_file_stem_get_distinct_names():
    assert run_names(["a/phishing.toml", "b/phishing.toml", "phishing-2.toml", "c/phishing.toml", "x.toml"]) == [
        "phishing",
        "phishing-2",
        "phishing-2-2",
        "phishing-3",
        "x",
    ]


def test_bad_usage_is_refused_before_anything_runs(stream, tmp_path, capsys):
    config = _config(tmp_path, "good")
    assert main(["compare", str(config), "--input", str(tmp_path / "missing.jsonl"), "--report", str(tmp_path / "r")]) == 1
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    assert main(["compare", str(config), "--input", str(tmp_path), "--report", str(tmp_path / "r")]) == 1
    assert "a directory, not a file" in capsys.readouterr().err
    assert main(["compare", str(config), "--input", str(stream), "--report", str(tmp_path / "r"), "--jobs", "0"]) == 1
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_stopped_comparison_starts_nothing_more_and_says_so(stream, tmp_path):
    from streamlearn.engine.compare import compare

    stop = threading.Event()
    stop.set()  # as SIGINT / SIGTERM would: no new learner starts
    report = compare([_config(tmp_path, "a"), _config(tmp_path, "b")], stream, tmp_path / "r", stop=stop, log_level="warning")
    assert [(r["name"], r["status"], r["error"]) for r in report["learners"]] == [
        ("a", "stopped", "not started: the comparison was stopped"),
        ("b", "stopped", "not started: the comparison was stopped"),
    ]
    assert report["failed"] == ["a", "b"] and report["curves"] is None
    assert "not started" in (tmp_path / "r" / "report.html").read_text()
