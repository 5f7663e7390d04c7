"""Repository-wide rules: no pickle, Python 3.8 compatible, OpenCV only where
used, the roles kept short (what a role does, not how a service is wired)."""

import ast
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


#: issue 18's ceilings (the roles' lengths before the runtime was shared)
ROLE_LINES = {"decoder.py": 422, "handler.py": 362, "collector.py": 355}


def long_functions(path: Path, limit: int = 40) -> list:
    return ["{}:{} {} ({} lines)".format(path.name, node.lineno, node.name,
                                         node.end_lineno - node.lineno + 1)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_the_roles_stay_short(tmp_path: Path) -> None:
    """Each role module under its ceiling, no function in one over 40 lines
    (new work goes to the modules the roles use); the check catches a planted
    long function."""
    for name, ceiling in ROLE_LINES.items():
        path = SRC / "vidpipe" / name
        assert len(path.read_text().splitlines()) < ceiling, name
        assert long_functions(path) == []
    planted = tmp_path / "role.py"
    planted.write_text("def f():\n" + "    x = 1\n" * 40)
    assert long_functions(planted) == ["role.py:1 f (41 lines)"]


def test_no_module_is_over_450_lines() -> None:
    """Issue 26: small modules, one responsibility each."""
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            for n in [len(p.read_text().splitlines())] if n > 450}
    assert long == {}, long
