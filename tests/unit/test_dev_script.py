"""``./dev``'s floor suites on machines with and without their interpreters:
a bare Debian 12 (no pyenv) runs the rest and says what it left out; CI
(``CI=true``) fails instead. Real ``bash ./dev floors`` runs, with PATH and
PYENV_ROOT standing for the machine."""

import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

ROOT = Path(__file__).resolve().parents[2]


def dev_floors(tmp_path: Path, ci: bool, on_path: Optional[Dict[str, str]] = None
               ) -> "subprocess.CompletedProcess[str]":
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in (on_path or {}).items():
        (bin_dir / name).symlink_to(target)
    env = {"PATH": "{}:/usr/bin:/bin".format(bin_dir), "HOME": str(tmp_path),
           "PYENV_ROOT": str(tmp_path / "no-pyenv")}
    if ci:
        env["CI"] = "true"
    return subprocess.run(["bash", str(ROOT / "dev"), "floors"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30)


def test_a_machine_without_the_floor_interpreters_names_them_and_passes(tmp_path: Path) -> None:
    result = dev_floors(tmp_path, ci=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
    for suite, version in (("focal", "3.8"), ("jammy", "3.10")):
        line = next(l for l in result.stderr.splitlines() if "the {} suite".format(suite) in l)
        assert line.startswith("dev: not run here:"), line
        assert "CPython {}".format(version) in line and "pyenv install {}".format(version) in line
        assert "./dev floor {}".format(suite) in line


def test_under_ci_a_missing_floor_interpreter_is_a_failure(tmp_path: Path) -> None:
    result = dev_floors(tmp_path, ci=True)
    assert result.returncode == 1
    assert "CI=true: the focal suite needs CPython 3.8" in result.stderr


def test_an_interpreter_on_path_makes_its_floor_run(tmp_path: Path) -> None:
    # any working interpreter named python3.8 stands for CPython 3.8 here:
    # what is tested is the finding, not the version
    result = dev_floors(tmp_path, ci=True, on_path={"python3.8": sys.executable})
    assert result.returncode == 1  # jammy's is still missing
    assert result.stdout.split() == ["focal"]
    assert "the jammy suite" in result.stderr and "the focal suite" not in result.stderr
    result = dev_floors(tmp_path, ci=True, on_path={"python3.10": sys.executable})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["focal", "jammy"]

