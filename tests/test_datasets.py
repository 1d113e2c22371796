import subprocess

import pytest

from streamlearn import datasets
from streamlearn.datasets import shared_data


def test_shared_data_is_found_through_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "x.csv").write_text("a\n1\n")
    monkeypatch.setenv("STREAMLEARN_SHARED_DATA", str(tmp_path))
    assert shared_data("x.csv") == tmp_path / "x.csv"


def test_shared_data_is_found_beside_the_checkout_a_scratch_clone_came_from(tmp_path_factory, monkeypatch):
    # home/shared/data/x.csv beside home/repo; the clone lives in an unrelated scratch folder
    home, scratch = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("scratch")
    (home / "shared" / "data").mkdir(parents=True)
    (home / "shared" / "data" / "x.csv").write_text("a\n1\n")
    subprocess.run(["git", "init", "-q", str(home / "repo")], check=True)
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "-q", str(home / "repo"), str(clone)], check=True, capture_output=True)
    (clone / "streamlearn").mkdir()
    monkeypatch.delenv("STREAMLEARN_SHARED_DATA", raising=False)
    monkeypatch.setattr(datasets, "__file__", str(clone / "streamlearn" / "datasets.py"))
    monkeypatch.chdir(clone)
    assert shared_data("x.csv") == home / "shared" / "data" / "x.csv"


def test_missing_shared_data_names_the_file_and_the_variable(monkeypatch):
    monkeypatch.delenv("STREAMLEARN_SHARED_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="'no-such-file.csv'.*STREAMLEARN_SHARED_DATA"):
        shared_data("no-such-file.csv")
