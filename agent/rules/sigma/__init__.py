"""Sigma rules imported as Mamori rules (`mamori rules import-sigma`; docs/sigma.md).

pySigma parses the Sigma YAML (rules, their detections with modifiers applied, the
condition's parse tree); a translation of our own turns each supported rule into a Mamori
rule: fieldmap.py (which log sources, and what each Sigma field is in our vocabulary),
expr.py (detections and condition to a Mamori condition), meta.py (ATT&CK tags, level,
status), importer.py (files in, one rules file out, checked by our loader, and the report).

Failure modes: a file that cannot be read or is not YAML is reported by name (exit 1); a
rule that cannot be translated is reported with the reason and left out; nothing raises.
pySigma is an optional dependency (`pip install 'mamori[sigma]'`: the node agent's image
does not need it), imported only when the import runs; without it the command says so.
"""
from __future__ import annotations

import sys

INSTALL_HINT = "pip install 'mamori[sigma]'"


def import_sigma(paths, catalog=None):
    """(the Mamori rules file's text, the Report) for Sigma files and directories
    (importer.import_sigma). Raises ImportError without pySigma."""
    from .importer import import_sigma as run
    return run(paths, catalog)


def main_import(args_list) -> int:
    """`mamori rules import-sigma FILE_OR_DIR... [-o OUT]` (importer.main_import)."""
    try:
        from .importer import main_import as run
    except ImportError as e:
        if not (e.name or "").startswith("sigma"):
            raise
        print(f"mamori rules import-sigma needs pySigma, which is not installed: "
              f"{INSTALL_HINT}", file=sys.stderr)
        return 1
    return run(args_list)
