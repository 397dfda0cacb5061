"""The steps of the runbooks, one module a step; what each notebook calls and shows.

Every step has the same shape: read the *before* state, act (or in a plan, say what it would
do), read the *after* state. Acting is idempotent: what is already as wanted is left alone and
the step says so. States are typed objects that render themselves as tables in a notebook
(``_repr_html_``) and give a DataFrame on demand (``.frame()``); no step reads a value back out of
a displayed table. A notebook stays a few lines::

    from psbridge.runbook.steps import install as step
    before = step.certificate_state(dep, cert.thumbprint, cert.subject)
    action = step.install_certificate(dep, cert.pfx_file, pfx_password, cert.thumbprint, plan=plan)

Which part of a deployment a step works on — the deployment, the tenant, one organization — is
its ``scope`` in the runbook's YAML, where a batch reads it.
"""

from psbridge.runbook.steps.common import Action, StepError, Wanted, WantedState

__all__ = ["Action", "StepError", "Wanted", "WantedState"]
