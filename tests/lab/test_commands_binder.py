"""Parameter binding and command lookup, as PowerShell 5.1 does them (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from commands_kit import SYNC, Recorder, cmd, fails, prop, run, secure

from psbridge.lab.world import World


@pytest.fixture
def ctx(tmp_path: Path) -> Recorder:
    World.seed(tmp_path, servers=2, orgs=2, legacy_servers=1)
    c = Recorder(tmp_path)
    run(c, cmd("Add-PSSnapin", "Microsoft.Crm.PowerShell"))
    return c


def test_unknown_command_is_not_recognized(ctx: Recorder) -> None:
    rec = fails(ctx, cmd("Invoke-Expression", Command="whoami"))
    assert rec.fqid == "CommandNotFoundException"
    assert rec.category == "ObjectNotFound"
    assert rec.target == "Invoke-Expression"
    assert rec.message.startswith("The term 'Invoke-Expression' is not recognized as the name of a cmdlet")


def test_crm_cmdlets_need_the_snapin(tmp_path: Path) -> None:
    World.seed(tmp_path, servers=1, orgs=1)
    c = Recorder(tmp_path)
    assert fails(c, cmd("Get-CrmOrganization")).fqid == "CommandNotFoundException"
    run(c, cmd("Add-PSSnapin", Name="microsoft.crm.powershell"))
    assert [prop(o, "UniqueName") for o in run(c, cmd("Get-CrmOrganization")).output] == ["contoso"]
    run(c, cmd("Add-PSSnapin", Name="Microsoft.Crm.PowerShell"))  # a second time: a non-terminating error
    assert "already added" in c.errors[0].message


def test_names_are_case_insensitive_prefixes_and_aliases(ctx: Recorder) -> None:
    run(ctx, cmd("get-crmorganization", nam="fabrikam"))
    assert prop(ctx.output[0], "FriendlyName") == "Fabrikam"
    run(ctx, cmd("Set-Variable", n="x", va=5))
    assert run(ctx, cmd("Get-Variable", "x", valueonly=True)).output == [5]
    # -ea is the alias of -ErrorAction
    run(ctx, cmd("Get-Variable", Name="nope", ea="SilentlyContinue"))
    assert ctx.errors == [] and ctx.output == []


def test_ambiguous_and_unknown_parameter_names(ctx: Recorder) -> None:
    rec = fails(ctx, cmd("Get-ChildItem", F="x"))
    assert rec.fqid == "AmbiguousParameter,Microsoft.PowerShell.Commands.GetChildItemCommand"
    assert "Possible matches include: -Filter -Force -File." in rec.message
    rec = fails(ctx, cmd(SYNC, ClientId="a", Foo="b"))
    assert rec.fqid == "NamedParameterNotFound,ConfigureCrmServerSideSync.ps1"
    assert rec.message == "A parameter cannot be found that matches parameter name 'Foo'."
    assert rec.exception_type == "System.Management.Automation.ParameterBindingException"


def test_missing_mandatory_parameters_terminate(ctx: Recorder) -> None:
    rec = fails(ctx, cmd(SYNC, pfxFilePath="C:\\x.pfx", organizationName="contoso"))
    assert rec.message == ("Cannot process command because of one or more missing mandatory parameters: "
                           "privateKeyPassword microsoftEntraIdTenantIdOrDomainName ClientID ClientSecret.")
    assert rec.fqid == "MissingMandatoryParameter,ConfigureCrmServerSideSync.ps1"
    assert rec.category == "InvalidArgument"


def test_a_plain_string_is_not_a_securestring_and_is_not_echoed(ctx: Recorder) -> None:
    rec = fails(ctx, cmd(SYNC, privateKeyPassword="Sup3r-secret", pfxFilePath="C:\\x.pfx",
                         organizationName="o",
                         microsoftEntraIdTenantIdOrDomainName="t", ClientID="c", ClientSecret="s"))
    assert rec.fqid == "ParameterArgumentTransformationError,ConfigureCrmServerSideSync.ps1"
    assert rec.exception_type.endswith("ParameterBindingArgumentTransformationException")
    assert "to type \"System.Security.SecureString\"" in rec.message
    assert "Sup3r-secret" not in rec.message


def test_conversion_validateset_and_enum_errors(ctx: Recorder) -> None:
    rec = fails(ctx, cmd("Get-CrmOrganization", Id="not-a-guid"))
    assert rec.fqid == "CannotConvertArgumentNoMessage,Microsoft.Crm.PowerShell.GetCrmOrganizationCmdlet"
    assert "Guid should contain 32 digits" in rec.message
    rec = fails(ctx, cmd("Get-FileHash", Path="C:\\x", Algorithm="CRC32"))
    assert rec.fqid == "ParameterArgumentValidationError,Microsoft.PowerShell.Commands.GetFileHashCommand" \
        or rec.fqid.startswith("ParameterArgumentValidationError,")
    assert 'does not belong to the set "SHA1,SHA256,SHA384,SHA512,MACTripleDES,MD5,RIPEMD160"' in rec.message
    rec = fails(ctx, cmd("Set-Content", Path="C:\\x", Value=b"1", Encoding="Binary"))
    assert "Unable to match the identifier name Binary to a valid enumerator name" in rec.message


def test_positional_arguments_and_switch_values(ctx: Recorder) -> None:
    run(ctx, cmd("Get-CrmOrganization", "contoso"))  # -Name is at position 0
    assert prop(ctx.output[0], "UniqueName") == "contoso"
    org_id = prop(ctx.output[0], "Id")
    # A GUID string still binds to -Name, the default set's parameter at that position.
    assert "UniqueName = " in fails(ctx, cmd("Get-CrmOrganization", str(org_id))).message
    assert prop(run(ctx, cmd("Get-CrmOrganization", Id=str(org_id))).output[0], "UniqueName") == "contoso"
    rec = fails(ctx, cmd("Get-Variable", "a", "b"))
    assert rec.fqid.startswith("PositionalParameterNotFound,")
    run(ctx, cmd("Set-Variable", "v", 1), cmd("Get-Variable", "v", ValueOnly=False))
    assert prop(ctx.output[0], "Name") == "v"


def test_error_action_stop_turns_an_error_into_a_terminating_one(ctx: Recorder) -> None:
    run(ctx, cmd("Get-Variable", Name="missing"))
    assert ctx.errors[0].fqid == "VariableNotFound,Microsoft.PowerShell.Commands.GetVariableCommand"
    rec = fails(ctx, cmd("Get-Variable", Name="missing", ErrorAction="Stop"))
    assert rec.message == "Cannot find a variable with the name 'missing'."
    ctx.variables["ErrorActionPreference"] = "Stop"
    assert fails(ctx, cmd("Get-Variable", Name="missing")).category == "ObjectNotFound"


def test_statements_run_in_order_and_pipelines_chain(ctx: Recorder) -> None:
    run(ctx, cmd("Set-Variable", Name="LASTEXITCODE", Value=0),
         [cmd("Get-CrmOrganization"), cmd("Select-Object", First=1),
          cmd("Select-Object", ExpandProperty="Id")])
    assert len(ctx.output) == 1 and str(ctx.output[0]) == World.load(ctx.state_dir).organizations()[0]["id"]
    run(ctx, [cmd("Get-CrmOrganization"), cmd("Select-Object", Property=["UniqueName", "State"])])
    assert [prop(o, "UniqueName") for o in ctx.output] == ["contoso", "fabrikam"]
    assert ctx.output[0].PSObject.type_names[0] == "Selected.Microsoft.Xrm.Sdk.Deployment.Organization"


def test_injected_fault_fails_the_command(ctx: Recorder) -> None:
    ctx.fail_commands = {"get-crmorganization": "The Deployment Web Service is unavailable."}
    rec = fails(ctx, cmd("Get-CrmOrganization"))
    assert rec.message == "The Deployment Web Service is unavailable."
    assert rec.category == "OperationStopped"


def test_script_text_is_refused(ctx: Recorder) -> None:
    from psbridge.lab.runspace import Invocation

    rec = fails(ctx, Invocation("Get-Process | Stop-Process", [], is_script=True))
    assert "not script text" in rec.message


def test_non_deployment_administrator_is_refused(ctx: Recorder) -> None:
    ctx.user = "LAB\\operator"
    rec = fails(ctx, cmd("Get-CrmOrganization"))
    assert "Deployment Administrator" in rec.message
    assert rec.fqid == "GetCrmOrganization,Microsoft.Crm.PowerShell.GetCrmOrganizationCmdlet"


def test_get_command_parameter_metadata_chain(ctx: Recorder) -> None:
    run(ctx, [cmd("Get-Command", Name=SYNC), cmd("Select-Object", ExpandProperty="Parameters"),
              cmd("Select-Object", ExpandProperty="Values")])
    by_name = {prop(p, "Name"): p for p in ctx.output}
    assert list(by_name)[:6] == ["privateKeyPassword", "pfxFilePath", "organizationName",
                                 "microsoftEntraIdTenantIdOrDomainName", "ClientID", "ClientSecret"]
    # Serialized at depth 1: the type arrives as its full name.
    assert prop(by_name["privateKeyPassword"], "ParameterType") == "System.Security.SecureString"
    assert prop(by_name["ClientSecret"], "ParameterType") == "System.String"
    assert prop(by_name["Verbose"], "SwitchParameter") is True
    assert list(prop(by_name["ErrorAction"], "Aliases")) == ["ea"]
    assert by_name["pfxFilePath"].PSObject.type_names[0] == "System.Management.Automation.ParameterMetadata"


def test_legacy_script_has_no_client_parameters(ctx: Recorder) -> None:
    ctx.server = "CRM02"
    run(ctx, [cmd("Get-Command", Name=SYNC), cmd("Select-Object", ExpandProperty="Parameters"),
              cmd("Select-Object", ExpandProperty="Keys")])
    assert "ClientID" not in ctx.output and "pfxFilePath" in ctx.output
    rec = fails(ctx, cmd(SYNC, privateKeyPassword=secure("x"), pfxFilePath="C:\\x.pfx", organizationName="o",
                         ClientID="c"))
    assert rec.message == "A parameter cannot be found that matches parameter name 'ClientID'."


def test_scripts_are_found_only_by_full_path(ctx: Recorder) -> None:
    assert fails(ctx, cmd("ConfigureCrmServerSideSync.ps1")).fqid == "CommandNotFoundException"
    assert fails(ctx, cmd(".\\ConfigureCrmServerSideSync.ps1")).fqid == "CommandNotFoundException"
    run(ctx, cmd("Remove-Item", Path=SYNC, Force=True))
    assert fails(ctx, cmd(SYNC)).fqid == "CommandNotFoundException"
    run(ctx, cmd("Get-Command", Name=SYNC))
    assert ctx.errors[0].fqid == "CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand"


def test_local_administrators(ctx: Recorder) -> None:
    names = [prop(m, "Name") for m in run(ctx, cmd("Get-LocalGroupMember", Group="Administrators")).output]
    assert names == ["CRM01\\Administrator", "LAB\\Domain Admins", "LAB\\crmadmin"]
    assert "LAB\\operator" not in names
    run(ctx, cmd("Get-LocalGroupMember", "Remote Desktop Users"))
    assert ctx.errors[0].message == "Group Remote Desktop Users was not found."


def test_automatic_variables(ctx: Recorder) -> None:
    [table] = run(ctx, cmd("Get-Variable", Name="PSVersionTable", ValueOnly=True)).output
    assert str(table["PSVersion"]) == "5.1.17763.6414" and table["PSEdition"] == "Desktop"
    assert run(ctx, cmd("Get-Variable", "ErrorActionPreference", ValueOnly=True)).output == ["Continue"]
    run(ctx, cmd("Set-Variable", "ErrorActionPreference", "Stop"))
    assert run(ctx, cmd("Get-Variable", "ErrorActionPreference", ValueOnly=True)).output == ["Stop"]
