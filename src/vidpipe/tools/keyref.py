"""``docs/config-reference.md`` made from the shipped ``pipeline.toml``: each
section's keys with their defaults and the comment that explains them, so
the reference is the file operators edit, not a copy that drifts.
``python3 -m vidpipe.tools.keyref etc/vidpipe/pipeline.toml > docs/config-reference.md``;
a test checks the committed page is what this makes, and that every key the
schema knows is in the shipped file."""

import re
import sys
from typing import Iterator, List, Optional, Tuple

SECTION = re.compile(r"^#?\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$")
KEY = re.compile(r"^#?\s*([a-z_][a-z0-9_]*)\s*=\s*(.*?)\s*(#.*)?$")


def entries(text: str) -> Iterator[Tuple[str, str, str, List[str]]]:
    """(section, key, default, what explains it) in file order: the comment
    lines just above a key, or for a key in a run of keys under one comment,
    a pointer to the first of the run."""
    section = ""
    comment: List[str] = []
    run_head = ""  # the first key of the run of keys this one continues
    for line in text.splitlines():
        found = SECTION.match(line)
        if found:  # a comment just above a section header tells of its keys
            section, run_head = found.group(1), ""
            continue
        found = KEY.match(line)
        if found and section:
            note = [found.group(3)[1:].strip()] if found.group(3) else []
            if comment or note:
                run_head = found.group(1)
            elif run_head:
                note = note + ["(with `{}` above)".format(run_head)]
            yield section, found.group(1), found.group(2), comment + note
            comment = []
            continue
        if line.startswith("#"):
            comment.append(line[1:].strip())
        elif not line.strip():
            comment, run_head = [], ""


def render(text: str, source: str) -> str:
    out = ["# Configuration key reference", "",
           "Made from [{}](../{}) by `python3 -m vidpipe.tools.keyref`; do not edit: "
           "change the shipped file and run it again. Every key the configuration "
           "schema knows is in it.".format(source, source), ""]
    current: Optional[str] = None
    for section, key, default, comment in entries(text):
        if section != current:
            out += ["## [{}]".format(section), "", "| key | default | what |", "|---|---|---|"]
            current = section
        what = " ".join(c for c in comment if c).replace("|", "\\|")
        out.append("| `{}` | `{}` | {} |".format(key, default.replace("|", "\\|"), what))
    return "\n".join(out).replace("|\n## ", "|\n\n## ") + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = args[0] if args else "etc/vidpipe/pipeline.toml"
    with open(source, encoding="utf-8") as handle:
        sys.stdout.write(render(handle.read(), source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
