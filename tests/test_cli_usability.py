"""What a newcomer meets first: CLI arguments that are a little wrong get a message that says what to do."""

import io
import json
import re

from streamlearn.cli import main
from streamlearn.engine.loop import RunStats
from streamlearn.engine.replay import _ProgressBar
from tests.conftest import REPO


def _phishing_config(tmp_path, **replace):
    text = (REPO / "configs" / "phishing.toml").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_checkpoints_show_takes_a_directory_and_shows_the_latest(tmp_path, phishing_jsonl, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _phishing_config(tmp_path)
    assert main(["replay", str(config), "--input", str(phishing_jsonl), "--no-progress", "--max-events", "700"]) == 0
    assert main(["replay", str(config), "--input", str(phishing_jsonl), "--no-progress"]) == 0
    capsys.readouterr()
    directory = tmp_path / "out" / "phishing" / "checkpoints"
    assert main(["checkpoints", "show", str(directory), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["events"] == 1250 and shown["path"].endswith("checkpoint-0000000004.parquet")  # 500, 700 (stopped), 1000, 1250
    assert main(["checkpoints", "show", shown["path"]]) == 0  # a file still works
    assert "events      1250" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["checkpoints", "show", str(tmp_path / "empty")]) == 1
    assert "no checkpoints in" in capsys.readouterr().err


def test_a_directory_as_input_says_so_and_what_to_pass(tmp_path, phishing_jsonl, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.jsonl").write_text(phishing_jsonl.read_text())
    assert main(["replay", str(_phishing_config(tmp_path)), "--input", str(tmp_path / "data"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "is a directory: pass one .jsonl, .csv or .parquet file such as" in err and "events.jsonl" in err
    assert "not found" not in err


def test_a_directory_or_binary_file_as_config_is_exit_2(tmp_path, phishing_jsonl, capsys):
    assert main(["replay", str(tmp_path), "--input", str(phishing_jsonl)]) == 2
    assert "is a directory; pass a TOML config file" in capsys.readouterr().err
    (tmp_path / "model.bin").write_bytes(b"\xff\xfe\x00[learner]")
    assert main(["replay", str(tmp_path / "model.bin"), "--input", str(phishing_jsonl)]) == 2
    assert "is not UTF-8 text (byte 0xff at offset 0)" in capsys.readouterr().err


def test_misspelled_metric_and_river_model_get_suggestions(tmp_path, phishing_jsonl, capsys):
    metric = _phishing_config(tmp_path, **{'"Accuracy"': '"Acuracy"'})
    assert main(["replay", str(metric), "--input", str(phishing_jsonl)]) == 2
    assert "did you mean 'Accuracy'" in capsys.readouterr().err
    model = _phishing_config(tmp_path, **{"LogisticRegression": "LogisticRegresion"})
    assert main(["replay", str(model), "--input", str(phishing_jsonl)]) == 2
    err = capsys.readouterr().err
    assert "no such model" in err and "did you mean 'linear_model.LogisticRegression'" in err and "pickle" not in err


def test_progress_shows_events_per_second_and_every_metric_in_full():
    class Source:
        def progress(self):
            return 600, 1200

    class Processor:
        def metrics(self):
            return {"Accuracy": 0.8928, "Accuracy@1000": 0.906, "LogLoss": 0.33011, "LogLoss@1000": None, "CohenKappa": 0.75}

    out = io.StringIO()
    bar = _ProgressBar(Source(), Processor(), True, file=out, width=60)
    bar(RunStats(records=12_345, dead_letters=7), force=True)
    bar.close()
    final = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.getvalue()).split("\r")[-1].splitlines()
    assert "events/s" in final[0] and "B/s" not in out.getvalue()
    assert final[1:] == ["12,345 events, 7 dead letters", "Accuracy 0.8928 (last 1,000: 0.906)", "LogLoss 0.3301 (last 1,000: n/a), CohenKappa 0.75"]
    assert all(len(line) <= 60 for line in final)


def test_river_predictions_carry_the_event_id_and_true_y(tmp_path, phishing_jsonl, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = phishing_jsonl.read_text().splitlines()[:300]
    lines[5] = json.dumps({k: v for k, v in json.loads(lines[5]).items() if k != "y"})  # unlabelled: no y to carry
    (tmp_path / "e.jsonl").write_text("\n".join(lines) + "\n")
    for delay in (0, 10):
        config = _phishing_config(tmp_path, **{"history_every = 50": f"history_every = 50\nlabel_delay = {delay}"})
        assert main(["replay", str(config), "--input", "e.jsonl", "--no-progress", "--fresh"]) == 0
        predictions = [json.loads(line) for line in (tmp_path / "out" / "phishing" / "predictions.jsonl").read_text().splitlines()]
        events = [json.loads(line) for line in lines]
        assert [p["id"] for p in predictions] == [e["id"] for e in events]
        assert [p.get("y") for p in predictions] == [e.get("y") for e in events] and "y" not in predictions[5]


def test_the_readme_points_at_design_docs_that_exist():
    readme = (REPO / "README.md").read_text()
    assert "DESIGN.md" not in readme
    linked = set(re.findall(r"\((docs/[\w.-]+\.md)\)", readme))
    assert "docs/architecture.md" in linked
    assert all((REPO / path).is_file() for path in linked)
