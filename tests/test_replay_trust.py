"""A replay never resumes a stale checkpoint silently, and the same command gives the same report."""

import json
import shutil

import pytest

from streamlearn.engine.checkpoint import CheckpointStore
from streamlearn.engine.config import ConfigError, parse_config
from streamlearn.engine.processor import MetricSet
from streamlearn.engine.replay import RUN_FIELDS, EmptyInput, NothingLearned, StaleCheckpoint, replay
from tests.conftest import REPO, run_cli

LOGREG = {"model": "linear_model.LogisticRegression", "preprocessing": ["preprocessing.StandardScaler"]}


def _config(tmp_path, params=LOGREG, **tables):
    data = {
        "learner": {"name": "river", "params": params},
        "eval": {"metrics": ["Accuracy", "LogLoss"], "history_every": 50},
        "output": {"dead_letters": str(tmp_path / "dead.jsonl"), "predictions": str(tmp_path / "predictions.jsonl")},
        "checkpoint": {"dir": str(tmp_path / "checkpoints"), "every_events": 200},
        **tables,
    }
    return parse_config(data, env={})


@pytest.fixture
def stream(tmp_path, phishing_jsonl):
    """The Phishing stream with two bad lines in it, so dead-letter counts must survive a resume too."""
    lines = phishing_jsonl.read_text().splitlines()
    lines[10:10] = ["not json", '{"y": true}']
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _evaluation(report):
    """The report without the fields that describe one run (RUN_FIELDS)."""
    return {k: v for k, v in report.items() if k not in RUN_FIELDS}


def test_the_same_replay_twice_gives_the_same_report(tmp_path, stream):
    first = json.loads(open(replay(_config(tmp_path), stream, tmp_path / "r1", progress=False)["report_path"]).read())
    second = json.loads(open(replay(_config(tmp_path), stream, tmp_path / "r2", progress=False)["report_path"]).read())
    assert second["resumed_from_events"] == 1252 and second["checkpoints_written"] == 0  # nothing left to do
    assert _evaluation(second) == _evaluation(first)
    assert len(first["history"]) == 26 and first["dead_letters"] == 2


def test_a_resumed_replay_reports_the_whole_curve_and_all_counters(tmp_path, stream):
    whole = replay(_config(tmp_path / "whole"), stream, progress=False)
    replay(_config(tmp_path / "parts"), stream, progress=False, max_records=333)
    replay(_config(tmp_path / "parts"), stream, progress=False, max_records=400)
    resumed = replay(_config(tmp_path / "parts"), stream, progress=False)
    assert resumed["resumed_from_events"] == 733
    evaluation = {k: v for k, v in _evaluation(resumed).items() if k not in ("config",)}
    assert evaluation == {k: v for k, v in _evaluation(whole).items() if k not in ("config",)}
    assert [h["events"] for h in resumed["history"]] == [*range(50, 1251, 50), 1252]
    # the curve is stored in the checkpoint's JSON metadata (no pickle)
    latest = CheckpointStore(tmp_path / "parts" / "checkpoints").load_latest()
    assert latest.metadata["replay"]["history"] == resumed["history"]


def test_a_changed_config_over_old_checkpoints_is_refused_naming_the_difference(tmp_path, stream):
    replay(_config(tmp_path), stream, progress=False)
    with pytest.raises(StaleCheckpoint, match=r"learner\.params\.model: \"linear_model\.LogisticRegression\" → \"naive_bayes\.GaussianNB\"") as err:
        replay(_config(tmp_path, {"model": "naive_bayes.GaussianNB"}), stream, progress=False)
    assert "--fresh" in str(err.value)
    with pytest.raises(StaleCheckpoint, match=r"eval\.label_delay: 0 → 5"):
        replay(_config(tmp_path, eval={"metrics": ["Accuracy", "LogLoss"], "history_every": 50, "label_delay": 5}), stream, progress=False)


def test_settings_that_change_no_number_do_not_make_a_checkpoint_stale(tmp_path, stream):
    replay(_config(tmp_path), stream, progress=False, max_records=300)
    other = _config(
        tmp_path,
        checkpoint={"dir": str(tmp_path / "checkpoints"), "every_events": 1000, "keep": 2},
        engine={"batch_size": 64, "log_every_seconds": 1.0},
        kafka={"sasl_password": "secret", "bootstrap_servers": "elsewhere:9092"},
    )
    assert replay(other, stream, progress=False)["resumed_from_events"] == 300


def test_a_changed_input_is_refused_and_a_grown_one_needs_resume(tmp_path, stream):
    replay(_config(tmp_path), stream, progress=False)
    lines = stream.read_text().splitlines()
    stream.write_text("\n".join(lines[:-1]) + "\n")  # same start, one event fewer
    with pytest.raises(StaleCheckpoint, match="is not the one the checkpoints"):
        replay(_config(tmp_path), stream, progress=False)
    with pytest.raises(StaleCheckpoint, match="is not the one the checkpoints"):
        replay(_config(tmp_path), stream, progress=False, resume=True)
    stream.write_text("\n".join(lines + lines[:100]) + "\n")  # a log appended to
    with pytest.raises(StaleCheckpoint, match=r"it grew from .* \(--resume continues"):
        replay(_config(tmp_path), stream, progress=False)
    grown = replay(_config(tmp_path), stream, progress=False, resume=True)
    assert grown["resumed_from_events"] == 1252 and grown["events"] == 1352


def test_resume_refuses_when_there_is_nothing_to_resume(tmp_path, stream):
    with pytest.raises(StaleCheckpoint, match="no checkpoint in .* to resume from"):
        replay(_config(tmp_path), stream, progress=False, resume=True)
    with pytest.raises(StaleCheckpoint, match=r"needs a \[checkpoint\] dir"):
        replay(parse_config({"learner": {"name": "river", "params": LOGREG}}, env={}), stream, progress=False, resume=True)


def test_checkpoints_without_a_fingerprint_are_refused_unless_resume_is_asked(tmp_path, stream):
    config = _config(tmp_path)
    replay(config, stream, progress=False, max_records=300)
    store = CheckpointStore(tmp_path / "checkpoints")
    latest = store.load_latest()
    # What `streamlearn run` (or an older version) leaves: the same state, no replay metadata.
    shutil.rmtree(tmp_path / "checkpoints")
    CheckpointStore(tmp_path / "checkpoints").save(
        latest.state, events=latest.events, positions=latest.positions, learner=latest.metadata["learner"]
    )
    with pytest.raises(StaleCheckpoint, match="records no replay fingerprint"):
        replay(config, stream, progress=False)
    assert replay(config, stream, progress=False, resume=True)["resumed_from_events"] == 300


def test_fresh_moves_old_checkpoints_and_outputs_aside_and_starts_over(tmp_path, stream):
    replay(_config(tmp_path), stream, progress=False)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    gaussian = _config(tmp_path, {"model": "naive_bayes.GaussianNB"})
    report = replay(gaussian, stream, progress=False, fresh=True)
    assert report["resumed_from_events"] == 0 and report["events"] == 1252
    assert report["final_metrics"] == replay(_config(tmp_path / "ref", {"model": "naive_bayes.GaussianNB"}), stream, progress=False)["final_metrics"]
    (aside,) = tmp_path.glob("checkpoints.old-*")
    assert sorted(p.name for p in aside.iterdir()) == before  # moved, not deleted
    (old_predictions,) = tmp_path.glob("predictions.old-*.jsonl")
    assert len(old_predictions.read_text().splitlines()) == 1250
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 1250  # not appended to the old ones
    with pytest.raises(ValueError, match="exclude each other"):
        replay(gaussian, stream, progress=False, fresh=True, resume=True)
    # again at once (the same second, maybe): a second name, the first copy kept
    replay(gaussian, stream, progress=False, fresh=True, max_records=10)
    replay(gaussian, stream, progress=False, fresh=True, max_records=10)
    assert len(list(tmp_path.glob("checkpoints.old-*"))) == 3 and len(list(tmp_path.glob("predictions.old-*.jsonl"))) == 3


def test_cli_refuses_a_stale_checkpoint_with_exit_2_and_fresh_starts_over(tmp_path, stream):
    config = (REPO / "configs" / "phishing.toml").read_text()
    (tmp_path / "lr.toml").write_text(config)
    (tmp_path / "nb.toml").write_text(
        config.replace('"linear_model.LogisticRegression"', '"naive_bayes.GaussianNB"').replace('preprocessing = ["preprocessing.StandardScaler"]', "")
    )
    args = ["--input", str(stream), "--report", "rep", "--no-progress"]
    first = run_cli("replay", "lr.toml", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = (tmp_path / "rep" / "report.json").read_text()
    stale = run_cli("replay", "nb.toml", *args, cwd=tmp_path)
    assert stale.returncode == 2
    assert "naive_bayes.GaussianNB" in stale.stderr and "--fresh" in stale.stderr and "Traceback" not in stale.stderr
    assert (tmp_path / "rep" / "report.json").read_text() == report  # the refused run wrote nothing
    fresh = run_cli("replay", "nb.toml", *args, "--fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["config"]["learner"]["params"]["model"] == "naive_bayes.GaussianNB"
    assert list((tmp_path / "out" / "phishing").glob("checkpoints.old-*"))


# --------------------------------------------------------------------------- finding 2: no silent wrong results


def _flat_rows(phishing_jsonl, n=200):
    return [{**e["x"], "is_phishing": e["y"]} for e in map(json.loads, phishing_jsonl.read_text().splitlines()[:n])]


def test_an_empty_input_is_an_error_and_stores_no_checkpoint(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "header.csv").write_text("a,is_phishing\n")
    pq.write_table(pa.table({"a": pa.array([], pa.float64()), "is_phishing": pa.array([], pa.bool_())}), tmp_path / "empty.parquet")
    for name in ("empty.jsonl", "header.csv", "empty.parquet"):
        with pytest.raises(EmptyInput, match="holds no events"):
            replay(_config(tmp_path, input={"target": "is_phishing"} if "jsonl" not in name else {}), tmp_path / name, progress=False)
    assert not list((tmp_path / "checkpoints").glob("*.parquet"))
    (tmp_path / "c.toml").write_text((REPO / "configs" / "phishing.toml").read_text())
    result = run_cli("replay", "c.toml", "--input", "empty.jsonl", "--report", "rep", cwd=tmp_path)
    assert result.returncode == 1 and "holds no events" in result.stderr
    assert not (tmp_path / "rep" / "report.json").exists()


def test_a_flat_file_without_a_target_names_the_fix_before_the_first_row(tmp_path, phishing_jsonl):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _flat_rows(phishing_jsonl)
    header = list(rows[0])
    (tmp_path / "p.csv").write_text(",".join(header) + "\n" + "".join(",".join(str(r[h]).lower() for h in header) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    for name in ("p.csv", "p.parquet"):
        with pytest.raises(ConfigError, match=r"add \[input\] target = \"is_phishing\""):
            replay(_config(tmp_path), tmp_path / name, progress=False)
        with pytest.raises(ConfigError, match=r"target = 'is_phish' is not a column .*did you mean \[input\] target = 'is_phishing'"):
            replay(_config(tmp_path, input={"target": "is_phish"}), tmp_path / name, progress=False)
    with pytest.raises(ConfigError, match=r"exclude names 'nope'"):
        replay(_config(tmp_path, input={"target": "is_phishing", "exclude": ["nope"]}), tmp_path / "p.csv", progress=False)
    assert not (tmp_path / "predictions.jsonl").exists()  # refused before anything was read or written
    (tmp_path / "c.toml").write_text((REPO / "configs" / "phishing.toml").read_text())
    result = run_cli("replay", "c.toml", "--input", "p.csv", cwd=tmp_path)
    assert result.returncode == 2 and '[input] target = "is_phishing"' in result.stderr
    assert replay(_config(tmp_path, input={"target": "is_phishing"}), tmp_path / "p.csv", progress=False)["processed"] == 200


def test_a_run_where_every_event_is_a_dead_letter_fails_with_the_reasons(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"x": {"a": "b"}, "y": true}\nnot json\n' * 3)
    with pytest.raises(NothingLearned, match=r"6 of 6 events were dead letters; top reasons: 3 × x\['a'\] must be a number") as err:
        replay(_config(tmp_path), tmp_path / "bad.jsonl", tmp_path / "rep", progress=False)
    assert "rep" in str(err.value)  # the report is still written, for the reasons
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["final_metrics"] == {"Accuracy": None, "Accuracy@1000": None, "LogLoss": None, "LogLoss@1000": None}
    assert report["dead_letter_share"] == 1.0 and report["dead_letter_reasons"]["invalid JSON: Expecting value: line 1 column 1 (char 0)"] == 3
    (tmp_path / "c.toml").write_text((REPO / "configs" / "phishing.toml").read_text())
    result = run_cli("replay", "c.toml", "--input", "bad.jsonl", cwd=tmp_path)
    assert result.returncode == 1 and "learned nothing" in result.stderr and "must be a number" in result.stderr


def test_a_high_dead_letter_share_is_reported_prominently(tmp_path, phishing_jsonl):
    good = phishing_jsonl.read_text().splitlines()[:100]
    (tmp_path / "some.jsonl").write_text("\n".join(good + ['{"x": {"a": "b"}, "y": true}'] * 6 + ["{}"]) + "\n")
    report = replay(_config(tmp_path), tmp_path / "some.jsonl", progress=False)
    (warning,) = report["warnings"]
    assert warning.startswith("6.5% dead letters: 7 of 107 events") and "6 × x['a'] must be a number, got str; 1 × missing field 'x'" in warning
    (tmp_path / "c.toml").write_text((REPO / "configs" / "phishing.toml").read_text())
    result = run_cli("replay", "c.toml", "--input", "some.jsonl", cwd=tmp_path)
    assert result.returncode == 0 and "streamlearn: warning: 6.5% dead letters" in result.stderr
    (tmp_path / "few.jsonl").write_text("\n".join(good + ["{}"] * 4) + "\n")  # 3.8%: below the 5% mark
    report = replay(_config(tmp_path / "few"), tmp_path / "few.jsonl", progress=False)
    assert report["warnings"] == [] and report["dead_letters"] == 4


def test_metrics_without_data_are_missing_not_zero(tmp_path, phishing_jsonl):
    unlabelled = [json.dumps({"x": e["x"]}) for e in map(json.loads, phishing_jsonl.read_text().splitlines()[:60])]
    (tmp_path / "unlabelled.jsonl").write_text("\n".join(unlabelled) + "\n")
    report = replay(_config(tmp_path), tmp_path / "unlabelled.jsonl", tmp_path / "rep", progress=False)
    assert report["processed"] == 60 and set(report["final_metrics"].values()) == {None}
    stored = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert stored["final_metrics"]["LogLoss"] is None and stored["history"][0]["Accuracy"] is None
    metrics = MetricSet(["Accuracy", "LogLoss"], window=10)
    assert metrics.values() == {"Accuracy": None, "Accuracy@10": None, "LogLoss": None, "LogLoss@10": None}
    metrics.update(True, False, {True: 0.4, False: 0.6})
    assert metrics.values()["Accuracy"] == 0.0 and metrics.values()["LogLoss"] > 0  # a real 0.0 stays 0.0
    restored = MetricSet(["Accuracy", "LogLoss"], window=10)
    restored.load_state_dict(metrics.state_dict())
    assert restored.values() == metrics.values()
