"""Repository-wide rules: no pickle, Python 3.8 compatible, OpenCV only where used."""

import shutil
import subprocess
import sys
import tempfile
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


def test_a_collector_without_image_outputs_does_not_load_opencv() -> None:
    """OpenCV costs a process 0.6 s to import and ~100 MB resident; a collector
    that only logs or writes JSON lines must not pay it."""
    code = ("import sys; from vidpipe.collector import Collector; "
            "from vidpipe.config import config_from_dict; "
            "c = Collector(config_from_dict({'pipeline': {'runtime_dir': sys.argv[1]}, "
            "'collector': {'outputs': ['log', 'jsonl'], 'jsonl_path': sys.argv[1] + '/r.jsonl', "
            "'metrics': False}})); "
            "loaded = 'cv2' in sys.modules; c.close(); print(loaded)")
    with tempfile.TemporaryDirectory(dir="/tmp") as run:
        result = subprocess.run([sys.executable, "-c", code, run], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True,
                                env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip().splitlines()[-1:] == ["False"], result.stdout
