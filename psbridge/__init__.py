"""psbridge: Dynamics 365 on-premises ↔ Exchange Online server-side sync, as a runbook."""

import sys

__version__ = "0.1.0"

# jsonschema (imported by nbformat, so by papermill and the record) checks the "iri" format with
# rfc3987-syntax when that is installed, as JupyterLab's jupyter-events has it installed; importing
# it builds an Earley parser from its grammar, about 1 s in every process that imports nbformat.
# No schema psbridge validates has that format, so a psbridge process goes without that one check
# (jsonschema leaves it out when the import fails; a process that imported it first keeps it).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
