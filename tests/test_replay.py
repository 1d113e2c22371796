import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, utils

from streamlearn.engine.config import ConfigError, parse_config
from streamlearn.engine.replay import replay
from tests.conftest import REPO, run_cli, write_jsonl

LOGREG = {"name": "river", "params": {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}}


def _config(tmp_path=None, **tables):
    data = {"learner": LOGREG, **tables}
    return parse_config(data, env={})


@pytest.mark.parametrize("delay", [0, 7, 60])
def test_replay_matches_river_progressive_val_score(phishing_jsonl, delay):
    # Cumulative and windowed metrics both match river's, the windowed ones through river's Rolling.
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    scored = [metrics.Accuracy(), metrics.LogLoss(), utils.Rolling(metrics.Accuracy, 200), utils.Rolling(metrics.LogLoss, 200)]
    evaluate.progressive_val_score(datasets.Phishing(), model, metrics.base.Metrics(scored), delay=delay or None)
    report = replay(
        _config(eval={"metrics": ["Accuracy", "LogLoss"], "label_delay": delay, "window": 200}), phishing_jsonl, progress=False
    )
    assert report["events"] == report["processed"] == 1250
    keys = ["Accuracy", "LogLoss", "Accuracy@200", "LogLoss@200"]
    assert report["final_metrics"] == {"Accuracy": scored[0].get(), "Accuracy@200": scored[2].get(), "LogLoss": scored[1].get(), "LogLoss@200": scored[3].get()}
    assert scored[2].get() != scored[0].get()
    assert set(report["history"][0]) == {"events", *keys}


def test_windowed_metrics_can_be_turned_off_and_a_negative_window_is_refused(phishing_jsonl):
    report = replay(_config(eval={"metrics": ["Accuracy"], "window": 0}), phishing_jsonl, progress=False)
    assert list(report["final_metrics"]) == ["Accuracy"]
    with pytest.raises(ConfigError, match="window"):
        _config(eval={"metrics": ["Accuracy"], "window": -5})


def test_a_misspelled_metric_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"no metric 'Acuracy' \(did you mean 'Accuracy'"):
        _config(eval={"metrics": ["Acuracy"]})
    with pytest.raises(ConfigError, match=r"no metric 'logloss' \(did you mean 'LogLoss'"):
        _config(eval={"metrics": ["logloss"]})


def test_csv_and_parquet_inputs_give_the_same_result(tmp_path, phishing_jsonl):
    rows = [{**e["x"], "is_phishing": e["y"]} for e in map(json.loads, phishing_jsonl.read_text().splitlines())]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet", row_group_size=100)
    header = list(rows[0])
    (tmp_path / "p.csv").write_text(
        ",".join(header) + "\n" + "".join(",".join(str(r[h]).lower() for h in header) + "\n" for r in rows)
    )
    reference = replay(_config(), phishing_jsonl, progress=False)["final_metrics"]
    for name in ("p.parquet", "p.csv"):
        report = replay(_config(input={"target": "is_phishing"}), tmp_path / name, progress=False)
        assert report["events"] == 1250
        assert report["final_metrics"] == reference


def test_bad_events_go_to_dead_letters_with_reason_and_position(tmp_path):
    good = [{"id": i, "x": {"a": float(i % 5), "b": 1.0}, "y": i % 2 == 0} for i in range(40)]
    bad_lines = {
        3: '{"id": 1, "x": {"a": 1.0',  # truncated JSON
        8: '{"id": 2, "y": true}',  # missing x
        13: '{"id": 3, "x": {"a": "high"}, "y": true}',  # wrong type
        17: '{"id": 4, "x": {"a": NaN}, "y": true}',  # NaN
        21: '{"id": 5, "x": {"a": Infinity}, "y": false}',  # inf
        25: '[1, 2, 3]',  # not an object
        29: '{"id": 6, "x": [1.0, 2.0], "y": true}',  # x not an object
        33: '{"id": 7, "x": {"a": 1.0}, "y": [1]}',  # label of a wrong type
        36: '{"id": 8, "x": {"a": 1.0}, "y": true, "pad": "' + "z" * 3000 + '"}',  # too big
    }
    lines = [json.dumps(e) for e in good]
    for row in sorted(bad_lines):
        lines.insert(row, bad_lines[row])
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    with open(path, "ab") as f:
        f.write(b'{"id": 9, "x": {"a": 1.0}, "y": "\xff\xfe"}\n')  # not UTF-8
    config = _config(
        output={"dead_letters": str(tmp_path / "dlq.jsonl"), "predictions": str(tmp_path / "pred.jsonl")},
        engine={"max_event_bytes": 2048, "batch_size": 8},
    )
    report = replay(config, path, progress=False)
    letters = [json.loads(line) for line in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    expected_rows = sorted(bad_lines) + [len(lines)]
    assert [d["source"]["row"] for d in letters] == expected_rows
    reasons = [d["reason"] for d in letters]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "missing field 'x'"
    assert reasons[2] == "x['a'] must be a number, got str"
    assert reasons[3] == "x['a'] is not finite (nan)"
    assert reasons[4] == "x['a'] is not finite (inf)"
    assert reasons[5] == "event must be a JSON object, got list"
    assert reasons[6] == "x must be an object of features, got list"
    assert reasons[7].startswith("y must be a class label")
    assert reasons[8].startswith("event of 30") and "exceeds max_event_bytes=2048" in reasons[8]
    assert reasons[9] == "event is not UTF-8"
    # the raw event travels with the reason (base64 when it is not text)
    assert letters[0]["raw"].startswith('{"id": 1, "x"')
    assert "raw_base64" in letters[9]
    # every good event was processed, in order, nothing dropped silently
    predictions = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert len(predictions) == report["processed"] == len(good)
    assert report["dead_letters"] == len(letters) == 10
    assert report["events"] == len(good) + 10
    assert sum(report["dead_letter_reasons"].values()) == 10


def test_unlabelled_events_are_predicted_not_learned(tmp_path):
    labelled = [{"x": {"a": float(i % 3)}, "y": i % 3 == 0} for i in range(30)]
    unlabelled = [{"x": {"a": 2.0}}] * 4
    runs = {}
    for name, events in (("labelled", labelled), ("mixed", labelled[:15] + unlabelled + labelled[15:])):
        path = write_jsonl(tmp_path / f"{name}.jsonl", events)
        config = _config(output={"predictions": str(tmp_path / f"{name}-p.jsonl")}, checkpoint={"dir": str(tmp_path / name)})
        runs[name] = replay(config, path, progress=False)
    assert runs["mixed"]["outputs"] == 34 and runs["labelled"]["outputs"] == 30
    assert runs["mixed"]["final_metrics"] == runs["labelled"]["final_metrics"]
    from streamlearn.engine.checkpoint import CheckpointStore

    hashes = {name: CheckpointStore(tmp_path / name).list()[-1].sha256 for name in runs}
    assert hashes["mixed"] == hashes["labelled"]


def test_cli_replay_writes_report_and_plot(tmp_path, phishing_jsonl):
    result = run_cli("replay", str(REPO / "configs" / "phishing.toml"), "--input", str(phishing_jsonl), "--report", str(tmp_path / "rep"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert summary["final_metrics"] == report["final_metrics"]
    assert report["events"] == 1250 and report["dead_letters"] == 0
    assert report["events_per_second"] > 0
    assert report["config"]["learner"]["name"] == "river"
    # history points every history_every events (50 in the config) and at the end
    assert [h["events"] for h in report["history"]] == list(range(50, 1251, 50))
    assert report["history"][-1]["Accuracy"] == report["final_metrics"]["Accuracy"]
    png = (tmp_path / "rep" / "metrics.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # the config's output and checkpoint paths were used, relative to the working directory
    assert (tmp_path / "out" / "phishing" / "predictions.jsonl").exists()
    assert list((tmp_path / "out" / "phishing" / "checkpoints").glob("checkpoint-*.parquet"))


def test_numeric_feature_validation_edges():
    from streamlearn.engine.processor import BadEvent, InputLimits, numeric_features

    assert numeric_features({"x": {"a": 1, "b": 2.5, "c": True}}) == {"a": 1, "b": 2.5, "c": True}
    wide = InputLimits(max_feature_abs=1.5e308)
    assert numeric_features({"x": {"a": 1e308, "b": 1e308}}, limits=wide) == {"a": 1e308, "b": 1e308}  # the sum overflows; values are fine
    with pytest.raises(BadEvent, match=r"x\['a'\] is 1e\+308, beyond engine.max_feature_abs = 1e\+15"):
        numeric_features({"x": {"a": 1e308, "b": 1e308}})
    with pytest.raises(BadEvent, match=r"x\['a'\] is an integer of 401 digits"):
        numeric_features({"x": {"a": 10**400}}, limits=wide)
    # Their sum is finite, each is not: every value is bounded, not just the sum.
    with pytest.raises(BadEvent, match=r"x\['a'\] is an integer of 401 digits"):
        numeric_features({"x": {"a": 10**400, "b": -(10**400)}})
    with pytest.raises(BadEvent, match=r"x\['b'\] is not finite \(-inf\)"):
        numeric_features({"x": {"a": 1.0, "b": float("-inf")}})
    with pytest.raises(BadEvent, match=r"x\['n'\] must be a number, got NoneType"):
        numeric_features({"x": {"n": None}})


def test_number_list_validation_edges():
    from streamlearn.engine.processor import BadEvent, number_list

    assert number_list({"v": [1, 2.5]}, "v", 2) == [1, 2.5]
    with pytest.raises(BadEvent, match=r"v must have 3 values, got 2"):
        number_list({"v": [1, 2]}, "v", 3)
    with pytest.raises(BadEvent, match=r"v\[1\] is an integer of 401 digits, beyond engine.max_feature_abs"):
        number_list({"v": [1, 10**400]}, "v")
    with pytest.raises(BadEvent, match=r"v\[0\] must be a number, got bool"):
        number_list({"v": [True]}, "v")


def test_finite_number_validation_edges():
    from streamlearn.engine.processor import BadEvent, finite_number

    assert finite_number(3, "r") == 3.0
    with pytest.raises(BadEvent, match="r is an integer of 401 digits, beyond engine.max_feature_abs"):
        finite_number(10**400, "r")
    with pytest.raises(BadEvent, match=r"r is not finite \(nan\)"):
        finite_number(float("nan"), "r")
