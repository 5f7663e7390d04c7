"""The documentation in the project: every relative link in README.md and
docs/ resolves (file and heading), the key reference is what the shipped
pipeline.toml makes, every key the schema knows is in that file, and the
README stays a front page."""

import re
from pathlib import Path
from typing import List, Set

from vidpipe import config
from vidpipe.stages import builtin
from vidpipe.tools import keyref

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> Set[str]:
    """GitHub's anchors of a page's headings."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_relative_link_resolves() -> None:
    broken: List[str] = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append("{}: {} (no such file)".format(page.name, target))
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append("{}: {} (no such heading)".format(page.name, target))
    assert not broken, broken


def test_the_readme_is_a_front_page_and_links_every_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "./dev demo" in readme.split("\n## ")[1] and "./dev test" in readme.split("\n## ")[1]
    for guide in (ROOT / "docs").glob("*.md"):
        if guide.name != "config-reference.md":
            assert "docs/" + guide.name in readme, guide.name


def test_the_key_reference_is_made_from_the_shipped_file() -> None:
    shipped = ROOT / "etc" / "vidpipe" / "pipeline.toml"
    made = keyref.render(shipped.read_text(), "etc/vidpipe/pipeline.toml")
    assert (ROOT / "docs" / "config-reference.md").read_text() == made, \
        "run: python3 -m vidpipe.tools.keyref > docs/config-reference.md"


def test_every_key_the_schema_knows_is_in_the_shipped_file() -> None:
    shipped = (ROOT / "etc" / "vidpipe" / "pipeline.toml").read_text()
    found = {}
    for section, key, _default, what in keyref.entries(shipped):
        top = section.split(".")[0]
        if top == "collector":  # its outputs' keys are in sub-tables, by their new names
            top = section
        found.setdefault(top, set()).add(key)
        assert what, "{}.{} has no explanation in the shipped file".format(section, key)
    schema = {"pipeline": config.PIPELINE_RULES, "cameras": config.CAMERA_RULES,
              "handlers": config.HANDLER_RULES,
              "security": config.rules_of(config.SecurityConfig)}
    missing = ["{}.{}".format(s, k) for s, rules in schema.items()
               for k in rules if k not in found.get(s, set())]
    dotted = config.new_names("collector", config.COLLECTOR_TABLES)
    for field in config.COLLECTOR_RULES:
        section, _, key = dotted.get(field, "collector." + field).rpartition(".")
        if key not in found.get(section, set()):
            missing.append("{}.{}".format(section, key))
    assert not missing, missing
    stages = {cls.name: set(getattr(cls, "OPTIONS", {})) for cls in builtin.BUILTIN
              if getattr(cls, "OPTIONS", None) and cls.name != "sleep"}  # sleep: for tests
    shipped_stage = {}
    for section, key, _d, _w in keyref.entries(shipped):
        if section.startswith("stage."):
            shipped_stage.setdefault(section[6:], set()).add(key)
    for name, options in stages.items():
        assert options <= shipped_stage.get(name, set()), (name, options)


def test_the_shipped_files_commented_defaults_are_the_schemas() -> None:
    """What the shipped file shows commented out is the default (its header
    says so): checked against the schema, key by key, in every section (the
    collector's keys under their names in its sub-tables)."""
    from vidpipe.config.tomlread import loads

    shipped = (ROOT / "etc" / "vidpipe" / "pipeline.toml").read_text()
    defaults = {"pipeline": config._defaults(config.PipelineConfig),
                "cameras": config._defaults(config.CameraConfig),
                "handlers": config._defaults(config.HandlerConfig),
                "collector": config._defaults(config.CollectorConfig),
                "security": config._defaults(config.SecurityConfig)}
    fields = {v: k for k, v in config.new_names("collector", config.COLLECTOR_TABLES).items()}
    section, wrong, seen = "", [], 0
    for line in shipped.splitlines():
        header = re.match(r"^#?\[([a-z0-9_.]+)\]", line)
        if header:
            section = header.group(1)
            continue
        found = re.match(r"^#([a-z_]+) = (.*?)\s*(#.*)?$", line)
        top = section.split(".")[0]
        if not found or top not in defaults or (top == "cameras" and section.count(".") > 1) \
                or (top == "handlers" and section != "handlers"):
            continue  # zones, lines, a handler's own section: examples, not defaults
        name = "{}.{}".format(section, found.group(1))
        field = fields.get(name, found.group(1)) if top == "collector" else found.group(1)
        assert field in defaults[top], name
        seen += 1
        value = loads("v = " + found.group(2))["v"]
        if value != defaults[top][field]:
            wrong.append("{}: shipped {!r}, schema {!r}".format(name, value,
                                                               defaults[top][field]))
    assert seen >= 95 and not wrong, (seen, wrong)
