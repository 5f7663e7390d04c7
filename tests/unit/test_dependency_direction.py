"""The dependency direction docs/architecture.md (Layering) names, checked on
every module's imports (function-level imports included): only the CLI imports a role or a tool
(``vidpipe.tools``: commands, not services) -- so roles never import each
other, and the runtime, link and packages they share never reach back into
one; the packages along a frame's journey (capture -> link -> stages ->
link -> outputs, with status beside them and config below them) import
only downwards (RULES); ``wire`` imports neither ZeroMQ nor OpenCV; stages
and payloads never import ZeroMQ; code that runs as root (the udev helper)
stays small; and no two modules import each other, even lazily. Each check
is shown to catch a planted import."""

import ast
from pathlib import Path
from typing import Dict, List, Set

SRC = Path(__file__).resolve().parents[2] / "src"
ROLES = {"vidpipe.decoder", "vidpipe.handler", "vidpipe.collector"}
#: the only module that may import a role or a tool: it runs them
RUNS_ROLES = {"vidpipe.cli"}
TOOLS = "vidpipe.tools"
#: the packages along a frame's journey, and what each must never import
CAPTURE, LINK, STAGES, STATUS, OUTPUTS, HOST, ANALYTICS, CONFIG = (
    "vidpipe.capture", "vidpipe.link", "vidpipe.stages", "vidpipe.status", "vidpipe.outputs",
    "vidpipe.host", "vidpipe.analytics", "vidpipe.config")
#: module or package -> what it must never import (a prefix matches submodules too)
RULES = {
    # the link carries frames and results between the roles; it knows nothing of
    # where frames come from, what is done to them or where results go
    LINK: {CAPTURE, STAGES, STATUS, OUTPUTS, HOST, ANALYTICS} | ROLES,
    "vidpipe.link.wire": {"zmq", "cv2"} | ROLES,
    "vidpipe.link.payload": {"zmq"} | ROLES,
    # capture is the decoder's side, stages the handler's: neither reaches the other
    CAPTURE: {STAGES, STATUS, OUTPUTS, ANALYTICS} | ROLES,
    STAGES: {"zmq", CAPTURE, STATUS, OUTPUTS} | ROLES,
    "vidpipe.capture.naming": {"zmq", "cv2", "numpy"} | ROLES,  # runs as root, under udev
    # the collector's side
    OUTPUTS: {CAPTURE, STAGES, HOST} | ROLES,
    STATUS: {CAPTURE, STAGES, OUTPUTS, ANALYTICS, "cv2"} | ROLES,
    ANALYTICS: {"zmq", "cv2", CONFIG, LINK, STATUS, OUTPUTS} | ROLES,  # pure: boxes in, counts out
    # the configuration is below everything that reads it
    CONFIG: {"zmq", "cv2", CAPTURE, LINK, STAGES, STATUS, OUTPUTS, HOST} | ROLES,
    HOST: {CAPTURE, STAGES, STATUS, OUTPUTS} | ROLES,
}


def imports(path: Path, module: str) -> Set[str]:
    """Every module ``path`` imports, anywhere in it, as absolute names."""
    found: Set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update("{}.{}".format(base, alias.name) for alias in node.names)
    return found


def modules(root: Path = SRC) -> Dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def violations(root: Path = SRC) -> List[str]:
    found = []
    for module, path in sorted(modules(root).items()):
        used = imports(path, module)
        banned: Set[str] = set()
        for prefix, names in RULES.items():
            if module == prefix or module.startswith(prefix + "."):
                banned |= names
        if module not in RUNS_ROLES:
            banned |= ROLES - {module}
            if not (module == TOOLS or module.startswith(TOOLS + ".")):
                banned.add(TOOLS)  # CLI-only commands
        for name in sorted(used):
            if any(name == b or name.startswith(b + ".") for b in banned):
                found.append("{} imports {}".format(module, name))
    return found


def test_the_dependency_direction_holds() -> None:
    assert violations() == []


def test_the_check_catches_a_planted_import(tmp_path: Path) -> None:
    pkg = tmp_path / "vidpipe"
    (pkg / "stages").mkdir(parents=True)
    (pkg / "link").mkdir()
    for name in ("__init__.py", "decoder.py", "collector.py", "link/__init__.py",
                 "link/wire.py", "stages/__init__.py"):
        (pkg / name).write_text("")
    (pkg / "decoder.py").write_text("def f():\n    from vidpipe import collector\n")
    (pkg / "link" / "wire.py").write_text("import zmq\n")
    (pkg / "link" / "__init__.py").write_text("from vidpipe.capture import sources\n")
    (pkg / "stages" / "__init__.py").write_text("from zmq import Context\n")
    (pkg / "runtime.py").write_text("from vidpipe.handler import Handler\n")
    (pkg / "collector.py").write_text("from vidpipe.tools import status\n")
    assert violations(tmp_path) == ["vidpipe.collector imports vidpipe.tools",
                                    "vidpipe.collector imports vidpipe.tools.status",
                                    "vidpipe.decoder imports vidpipe.collector",
                                    "vidpipe.link imports vidpipe.capture",
                                    "vidpipe.link imports vidpipe.capture.sources",
                                    "vidpipe.link.wire imports zmq",
                                    "vidpipe.runtime imports vidpipe.handler",
                                    "vidpipe.runtime imports vidpipe.handler.Handler",
                                    "vidpipe.stages imports zmq",
                                    "vidpipe.stages imports zmq.Context"]


def import_cycles(root: Path = SRC) -> List[List[str]]:
    """Cycles among vidpipe's modules, function-level imports included (a
    lazy import is still a dependency); each found once, from its smallest name."""
    mods = modules(root)
    graph = {m: {n for n in imports(p, m) if n in mods and n != m} for m, p in mods.items()}
    cycles: List[List[str]] = []

    def walk(start: str, node: str, path: List[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                cycles.append(path + [start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return cycles


def test_no_import_cycles() -> None:
    assert import_cycles() == []


def test_the_cycle_check_catches_the_old_stages_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "vidpipe" / "stages"
    pkg.mkdir(parents=True)
    (tmp_path / "vidpipe" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("class Stage: pass\ndef registry():\n"
                                     "    from vidpipe.stages import builtin\n")
    (pkg / "builtin.py").write_text("from vidpipe.stages import Stage\n")
    assert import_cycles(tmp_path) == [["vidpipe.stages", "vidpipe.stages.builtin",
                                        "vidpipe.stages"]]
