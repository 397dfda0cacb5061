"""The bridge example the README shows runs as printed, against the lab."""

from __future__ import annotations

from typing import Any

import pandas as pd


def test_readme_example(lab: Any, capsys: Any) -> None:
    from psbridge import crm
    from psbridge.remote import Cmd, ConnectionProfile, Session
    from psbridge.secrets import lab_state_dir

    profile = ConnectionProfile.from_lab(lab_state_dir(), server="CRM01")  # or host=, user=, password="env:X"
    with Session(profile) as s:                             # one runspace pool for every command
        crm.check_prerequisites(s).raise_for_failures()     # snap-in, administrators, scripts in place
        org = crm.get_organization(s, "contoso")            # unknown name: ValidationError listing the others
        res = s.invoke("Get-CrmAdvancedSetting", ID=org.id, configurationEntityName="Organization",
                       setting="S2STenantId")
        print(res)                                          # output, errors, warnings, Write-Host, duration
        certs = s.invoke(Cmd("Get-ChildItem", Path=r"Cert:\LocalMachine\My") | Cmd("Select-Object", First=5))
        print(certs.to_frame(), s.journal_frame(), sep="\n")

    shown = capsys.readouterr().out
    assert "Get-CrmAdvancedSetting -ID" in shown and "Completed" in shown
    assert isinstance(certs.to_frame(), pd.DataFrame) and res.ok
