"""The runbook: a definition of steps, each a notebook run by papermill, facts handed forward.

In a step notebook, :func:`record` hands a fact to later steps and :func:`record_changes`
says what the step changed (``[]``: it was already done)::

    from psbridge.runbook import record, record_changes
"""

from psbridge.runbook.facts import FactError, read_facts, record, record_changes

__all__ = ["FactError", "read_facts", "record", "record_changes"]
