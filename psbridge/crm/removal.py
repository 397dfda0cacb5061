"""Taking the S2S certificate and tenant id back out of a deployment: the decommission's server side.

``Remove-CrmCertificate`` takes a certificate out of the configuration database (by its ``Id``, as
``Get-CrmCertificate`` lists it), ``Remove-Item Cert:\\LocalMachine\\My\\<thumbprint>`` out of a
server's store (``-DeleteKey``: its private key goes with it, nothing of it stays on the disk), and
``Set-CrmAdvancedSetting`` empties the organization's ``S2STenantId``. Each is journalled as an
intent first and read back after: the step is done only when the server says so, and a resume
that finds it already gone does nothing.
"""

from __future__ import annotations

from psbridge.crm.certificates import MACHINE_STORE, CrmCertificate, crm_certificates, store_certificates
from psbridge.crm.organizations import get_organization
from psbridge.crm.settings import S2S_TENANT_ID, get_advanced_setting, set_advanced_setting
from psbridge.crm.snapin import use_crm_snapin
from psbridge.errors import ChangeNotApplied
from psbridge.intents import intent
from psbridge.remote.command import Cmd
from psbridge.remote.session import Session


def remove_crm_certificate(session: Session, cert: CrmCertificate) -> bool:
    """Take ``cert`` out of the configuration database; False when it was not there (any more)."""
    use_crm_snapin(session)
    if not any(c.id.lower() == cert.id.lower() for c in crm_certificates(session)):
        return False
    what = f"Remove-CrmCertificate {cert.certificate_type} {cert.thumbprint} (Id {cert.id})"
    with intent("remove-crm-certificate", session.server, what):
        result = session.invoke(Cmd("Remove-CrmCertificate", Id=cert.id), retry=False)
    if any(c.id.lower() == cert.id.lower() for c in crm_certificates(session)):
        said = "; ".join(e.message for e in result.errors) or "no error was reported"
        raise ChangeNotApplied(f"{cert.certificate_type} certificate {cert.thumbprint} is still in the "
                               "configuration database after Remove-CrmCertificate on "
                               f"{session.server}: {said}")
    session.record("removed", what)
    return True


def remove_store_certificate(session: Session, thumbprint: str) -> bool:
    """Take the certificate (and its private key) out of ``LocalMachine\\My``; False when it was not there."""
    if not store_certificates(session, thumbprint=thumbprint):
        return False
    path = f"{MACHINE_STORE}\\{thumbprint.upper()}"
    with intent("remove-store-certificate", session.server, f"Remove-Item {path} -DeleteKey"):
        result = session.invoke(Cmd("Remove-Item", LiteralPath=path, DeleteKey=True), retry=False)
    if store_certificates(session, thumbprint=thumbprint):
        said = "; ".join(e.message for e in result.errors) or "no error was reported"
        raise ChangeNotApplied(f"{thumbprint} is still in LocalMachine\\My of {session.server} after "
                               f"Remove-Item: {said}")
    session.record("removed", f"{path} with its private key")
    return True


def clear_tenant_id(session: Session, organization: str) -> bool:
    """Empty the organization's ``S2STenantId``; False when it was empty already."""
    org = get_organization(session, organization)
    if not get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id):
        return False
    set_advanced_setting(session, "Organization", S2S_TENANT_ID, "", org.id)
    after = get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id)
    if after:
        raise ChangeNotApplied(f"{S2S_TENANT_ID} of {org.unique_name} still reads {after!r} on "
                               f"{session.server} after it was cleared")
    return True
