"""Sigma rules imported as Mamori rules (`mamori rules import-sigma`; docs/sigma.md).

pySigma parses the Sigma YAML (rules, their detections with modifiers applied, the
condition's parse tree); a translation of our own turns each supported rule into a Mamori
rule: fieldmap.py (which log sources, and what each Sigma field is in our vocabulary),
expr.py (detections and condition to a Mamori condition), meta.py (ATT&CK tags, level,
status), importer.py (files in, one rules file out, checked by our loader, and the report).

Failure modes: a file that cannot be read or is not YAML is reported by name (exit 1); a
rule that cannot be translated is reported with the reason and left out; nothing raises.
"""
from .importer import Entry, Report, import_sigma, main_import, translate  # noqa: F401
