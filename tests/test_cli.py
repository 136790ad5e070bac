"""The command line: info, demo, fit and recommend, run as a user would."""

import subprocess
import sys

import numpy as np

from fastrec.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "fastrec", *args], capture_output=True,
                          text=True, timeout=300)


def test_help_for_every_command():
    for cmd in ([], ["info"], ["demo"], ["fit"], ["recommend"]):
        result = run(*cmd, "--help")
        assert result.returncode == 0 and "usage" in result.stdout


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "fastrec" in out and "numpy" in out and "auto ->" in out


def test_demo_small(capsys):
    assert main(["demo", "--users", "300", "--items", "100", "--ratings", "6000",
                 "--epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert "backend auto ->" in out and "test RMSE" in out and "top-5" in out


def test_fit_then_recommend(tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = ["userId,movieId,rating,timestamp"]
    for u in range(40):
        for i in rng.choice(30, 10, replace=False):
            lines.append(f"{u + 1},{100 + i},{rng.integers(1, 6)},{1000 + i}")
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("\r\n".join(lines) + "\r\n")
    model = tmp_path / "model.npz"
    assert main(["fit", str(ratings), "--out", str(model), "--epochs", "3"]) == 0
    assert model.exists()
    assert main(["recommend", str(model), "1", "2", "-n", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2].startswith("1: ") and out[-1].startswith("2: ")
    assert len(out[-1].split(", ")) == 3


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["recommend", str(tmp_path / "missing.npz"), "1"]) == 2
    assert "error" in capsys.readouterr().err
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("not a model")
    assert main(["recommend", str(bogus), "1"]) == 2
