"""Reading a YAML file that must hold a mapping, keeping its node tree so that callers can
report problems at the line where they are."""
from __future__ import annotations

import yaml


class YamlFileError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def read_mapping(path: str, not_a_mapping: str) -> tuple[dict, yaml.Node | None]:
    """(the mapping, its composed node). Unreadable files, YAML syntax errors and a
    document that is not a mapping raise YamlFileError as `file:line: problem`."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise YamlFileError([f"{path}: cannot read: {e.strerror}"]) from None
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise YamlFileError([f"{path}{line}: YAML syntax: {getattr(e, 'problem', e)}"]) \
            from None
    if not isinstance(raw, dict):
        raise YamlFileError([f"{path}:1: {not_a_mapping}"])
    return raw, node
