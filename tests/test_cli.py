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


def _headed_csv(tmp_path, sep=","):
    rng = np.random.default_rng(1)
    lines = [sep.join(("user", "item", "rating"))]
    for u in range(30):
        for i in rng.choice(20, 8, replace=False):
            lines.append(sep.join((f"u{u}", f"i{i}", str(rng.integers(1, 6)))))
    path = tmp_path / "headed.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_reads_a_headed_csv_with_a_separator(tmp_path, capsys):
    path = _headed_csv(tmp_path, sep=";")
    out = tmp_path / "m.npz"
    assert main(["fit", str(path), "--header", "--sep", ";", "--out", str(out),
                 "--epochs", "2", "--backend", "numpy"]) == 0
    assert "fitted MF on 240 ratings (30 users, 20 items)" in capsys.readouterr().out
    assert main(["recommend", str(out), "u3", "-n", "2"]) == 0
    assert capsys.readouterr().out.startswith("u3: i")


def test_every_error_is_one_line_and_exit_2(tmp_path):
    path = _headed_csv(tmp_path)
    cases = [
        ["fit", str(path), "--header", "--out", str(tmp_path / "m.npz"), "--lr", "5",
         "--epochs", "3"],  # diverges (a traceback before)
        ["fit", str(path), "--out", str(tmp_path / "m.npz")],  # headed file without --header
        ["fit", str(path), "--header", "--out", str(tmp_path / "m.npz"), "--backend", "tpu"],
        ["fit", str(path), "--lr", "abc", "--out", "x"],  # argparse: bad value
        ["fit"],  # argparse: missing arguments
        ["recommend", str(tmp_path / "missing.npz"), "1"],
        ["serve", str(tmp_path / "missing.npz")],
        ["nosuchcommand"],
    ]
    for argv in cases:
        result = run(*argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (argv, result.stderr)
        assert len(lines) == 1 and "error" in lines[0], (argv, result.stderr)
        assert "Traceback" not in result.stderr


def test_every_option_has_help_text():
    from fastrec.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"fastrec {name} {action.dest} has no help text"


def test_info_without_a_gpu_says_so(capsys):
    from fastrec.backends import _probe

    reason = _probe("cuda").reason
    if _probe("cuda").available:
        import pytest

        pytest.skip("a CUDA device is present")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    if "libcuda" not in reason and "CuPy is not installed" not in reason:
        assert "no NVIDIA driver or GPU found" in out
