"""Repository-wide rules: no pickle, Python 3.8 compatible."""

import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_no_pickle_anywhere_in_the_code() -> None:
    offenders = [str(p) for p in SRC.rglob("*.py") if "pickle" in p.read_text()]
    assert offenders == []


def test_code_stays_python_38_compatible() -> None:
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    assert Path(vermin).exists(), "vermin is missing: run the test command (./dev test)"
    result = subprocess.run([vermin, "--target=3.8-", "--violations", "--eval-annotations",
                             "--no-tips", str(SRC)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    assert result.returncode == 0, result.stdout
