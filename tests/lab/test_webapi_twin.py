"""The CRM Web API twin and the AD FS twin, driven by clients psbridge did not write: requests with
requests-ntlm (Windows authentication) and msal (AD FS), over HTTPS on loopback."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import jwt
import msal
import pytest
import requests
from requests_ntlm import HttpNtlmAuth

from psbridge.lab.adfs import LAB_CLIENT_ID
from psbridge.lab.orchestrator import Lab

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def session(lab: Lab, account: str = "crmadmin") -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # the machine's REQUESTS_CA_BUNDLE must not replace the lab's CA
    s.verify = lab.config.ca_bundle
    s.auth = HttpNtlmAuth(lab.config.account(account).user, lab.config.password(account).reveal())
    s.headers.update({"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"})
    return s


@pytest.fixture(scope="module")
def ad_lab(lab_keys: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    import os
    import shutil

    state = tmp_path_factory.mktemp("webapi-ad")
    for key in lab_keys.rglob("*.pem"):
        target = state / key.relative_to(lab_keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(key, target)
    before = os.environ.get("PSBRIDGE_LAB_STATE")
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    lab = Lab(state, servers=2, orgs=2, webapi="ad").start()
    try:
        yield lab
    finally:
        lab.stop()
        if before is None:
            os.environ.pop("PSBRIDGE_LAB_STATE", None)
        else:
            os.environ["PSBRIDGE_LAB_STATE"] = before


@pytest.fixture
def ad(ad_lab: Lab) -> Iterator[Lab]:
    import os

    os.environ["PSBRIDGE_LAB_STATE"] = str(ad_lab.state_dir)
    yield ad_lab
    assert ad_lab.web is not None
    ad_lab.web.reset_knobs()


def api(lab: Lab, org: str = "contoso") -> str:
    return lab.config.web_url(org) + "/api/data/v9.0"


# --- Active Directory deployment ---------------------------------------------------------------------


def test_ad_site_asks_for_windows_authentication_and_requests_ntlm_signs_in(ad: Lab) -> None:
    bare = requests.get(f"{api(ad)}/WhoAmI", verify=ad.config.ca_bundle, timeout=10)
    assert bare.status_code == 401
    assert bare.headers["WWW-Authenticate"] == "Negotiate, NTLM"
    assert bare.headers["Server"] == "Microsoft-IIS/10.0"
    s = session(ad)
    me = s.get(f"{api(ad)}/WhoAmI", timeout=10)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
    user = s.get(f"{api(ad)}/systemusers({body['UserId']})?$select=domainname,fullname", timeout=10).json()
    assert user["domainname"] == "LAB\\crmadmin" and user["fullname"] == "CRM Admin"
    assert body["OrganizationId"] == ad.config.organization("contoso").id
    assert me.headers["REQ_ID"]


def test_a_wrong_password_is_refused(ad: Lab) -> None:
    s = session(ad)
    s.auth = HttpNtlmAuth("LAB\\crmadmin", "not-the-password")
    assert s.get(f"{api(ad)}/WhoAmI", timeout=10).status_code == 401


def test_metadata_names_the_real_entity_sets_attributes_and_navigation_properties(ad: Lab) -> None:
    r = session(ad).get(f"{api(ad)}/$metadata", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/xml"
    root = ET.fromstring(r.content)  # noqa: S314 - the lab's own document
    sets = {e.get("Name"): e.get("EntityType") for e in root.iter(f"{EDM}EntitySet")}
    assert sets["emailserverprofiles"] == "Microsoft.Dynamics.CRM.emailserverprofile"
    assert {"mailboxes", "systemusers", "queues", "organizations", "tracelogs"} <= set(sets)
    types = {t.get("Name"): t for t in root.iter(f"{EDM}EntityType")}
    mailbox = types["mailbox"]
    props = {p.get("Name") for p in mailbox.iter(f"{EDM}Property")}
    navs = {p.get("Name") for p in mailbox.iter(f"{EDM}NavigationProperty")}
    assert {"incomingemaildeliverymethod", "outgoingemaildeliverymethod", "actdeliverymethod",
            "testemailconfigurationscheduled", "mailboxstatus", "_emailserverprofile_value"} <= props
    assert "emailserverprofile" in navs
    org_navs = {p.get("Name") for p in types["organization"].iter(f"{EDM}NavigationProperty")}
    assert "defaultemailserverprofileid" in org_navs


def test_create_answers_204_with_the_entity_id_or_201_with_the_record(ad: Lab) -> None:
    s = session(ad)
    made = s.post(f"{api(ad)}/emailserverprofiles", json={"name": "p1", "servertype": 3}, timeout=10)
    assert made.status_code == 204 and made.content == b""
    location = made.headers["OData-EntityId"]
    assert location.startswith(f"{api(ad)}/emailserverprofiles(")
    shown = s.post(f"{api(ad)}/emailserverprofiles", json={"name": "p2", "servertype": 3},
                   headers={"Prefer": "return=representation"}, timeout=10)
    assert shown.status_code == 201 and shown.json()["name"] == "p2" and shown.json()["statecode"] == 0
    back = s.get(location, timeout=10).json()
    assert back["name"] == "p1" and back["usedefaulttenantid"] is True and back["incomingusessl"] is True


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"name": "x", "servertype": 7}, "0x8004431a", "The value 7 of 'servertype' on record of type "
                                                  "'emailserverprofile' is outside the valid range"),
    ({"name": "x", "servertype": 3, "colour": 1}, "0x80060888", "Could not find a property named 'colour'"),
    ({"name": "x" * 101, "servertype": 3}, "0x80044331", "exceeded the maximum allowed length of '100'"),
    ({"name": "x", "servertype": "3"}, "0x80060888", "Cannot convert the literal '3' to the expected type"),
    ({"name": "x"}, "0x80040203", "Attribute 'servertype' cannot be NULL"),
])
def test_the_server_refuses_what_crm_refuses_with_its_code_and_message(ad: Lab, body: dict[str, Any],
                                                                       code: str, words: str) -> None:
    r = session(ad).post(f"{api(ad)}/emailserverprofiles", json=body, timeout=10)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == code and words in error["message"]


def test_lookups_bind_by_their_navigation_property_and_read_back_as_value(ad: Lab) -> None:
    s = session(ad)
    pid = s.post(f"{api(ad)}/emailserverprofiles", json={"name": "bound", "servertype": 3},
                 timeout=10).headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    box = s.get(f"{api(ad)}/mailboxes?$select=name&$filter=name eq 'Alice Adams'",
                timeout=10).json()["value"][0]
    wrong = s.patch(f"{api(ad)}/mailboxes({box['mailboxid']})", headers={"If-Match": "*"}, timeout=10,
                    json={"_emailserverprofile_value@odata.bind": f"/emailserverprofiles({pid})"})
    assert wrong.status_code == 400 and "undeclared property '_emailserverprofile_value'" in wrong.text
    ok = s.patch(f"{api(ad)}/mailboxes({box['mailboxid']})", headers={"If-Match": "*"}, timeout=10,
                 json={"emailserverprofile@odata.bind": f"/emailserverprofiles({pid})"})
    assert ok.status_code == 204
    back = s.get(f"{api(ad)}/mailboxes({box['mailboxid']})?$select=_emailserverprofile_value", timeout=10,
                 headers={"Prefer": 'odata.include-annotations="*"'}).json()
    assert back["_emailserverprofile_value"] == pid
    assert back["_emailserverprofile_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "emailserverprofile"
    missing = s.patch(f"{api(ad)}/mailboxes({box['mailboxid']})", headers={"If-Match": "*"}, timeout=10,
                      json={"emailserverprofile@odata.bind":
                            "/emailserverprofiles(00000000-0000-0000-0000-000000000001)"})
    assert missing.status_code == 404 and "Does Not Exist" in missing.json()["error"]["message"]


def test_patch_upserts_unless_if_match(ad: Lab) -> None:
    s = session(ad)
    rid = "0b3f1c3e-0000-4000-8000-00000000abcd"
    refused = s.patch(f"{api(ad)}/emailserverprofiles({rid})", json={"name": "u"}, headers={"If-Match": "*"},
                      timeout=10)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "0x80040217"
    assert refused.json()["error"]["message"] == f"emailserverprofile With Id = {rid} Does Not Exist"
    made = s.patch(f"{api(ad)}/emailserverprofiles({rid})", json={"name": "u", "servertype": 3}, timeout=10)
    assert made.status_code == 204 and s.get(f"{api(ad)}/emailserverprofiles({rid})", timeout=10).ok


def test_paging_filters_and_counts(ad: Lab) -> None:
    s = session(ad)
    first = s.get(f"{api(ad)}/systemusers?$select=fullname&$count=true", timeout=10,
                  headers={"Prefer": "odata.maxpagesize=2"})
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=2"
    page = first.json()
    names = [u["fullname"] for u in page["value"]]
    assert len(names) == 2 and page["@odata.count"] == 6
    while "@odata.nextLink" in page:
        page = s.get(page["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"}, timeout=10).json()
        names += [u["fullname"] for u in page["value"]]
    assert sorted(names) == sorted(["SYSTEM", "INTEGRATION", "CRM Admin", "Lab Operator", "Alice Adams",
                                    "Bob Brown"])
    active = s.get(f"{api(ad)}/systemusers", timeout=10, params={
        "$select": "fullname", "$filter": "isdisabled eq false and internalemailaddress ne null and "
                                          "(startswith(domainname,'lab\\a') or contains(fullname,'BROWN'))"})
    assert sorted(u["fullname"] for u in active.json()["value"]) == ["Alice Adams", "Bob Brown"]
    bad = s.get(f"{api(ad)}/systemusers", params={"$filter": "nosuch eq 1"}, timeout=10)
    assert bad.status_code == 400
    assert "Could not find a property named 'nosuch'" in bad.json()["error"]["message"]


def test_approving_email_needs_the_privilege_and_is_mirrored_on_the_mailbox(ad: Lab) -> None:
    admin, operator = session(ad), session(ad, "operator")
    bob = admin.get(f"{api(ad)}/systemusers?$filter=fullname eq 'Bob Brown'&$select=_defaultmailbox_value",
                    timeout=10).json()["value"][0]
    refused = operator.patch(f"{api(ad)}/systemusers({bob['systemuserid']})",
                             json={"emailrouteraccessapproval": 1}, headers={"If-Match": "*"}, timeout=10)
    assert refused.status_code == 403
    message = refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "0x80040220" and "missing prvWriteUser privilege" in message
    me = operator.get(f"{api(ad)}/WhoAmI", timeout=10).json()["UserId"]
    mine = operator.get(f"{api(ad)}/systemusers({me})?$select=_defaultmailbox_value", timeout=10).json()
    box = mine["_defaultmailbox_value"]
    own = operator.patch(f"{api(ad)}/mailboxes({box})", json={"emailrouteraccessapproval": 1},
                         headers={"If-Match": "*"}, timeout=10)
    assert own.status_code == 403
    assert "missing prvApproveRejectEmailAddress privilege" in own.json()["error"]["message"]
    privileges = operator.get(f"{api(ad)}/systemusers({me})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()",
                              timeout=10).json()["RolePrivileges"]
    wanted = operator.get(f"{api(ad)}/privileges?$filter=name eq 'prvApproveRejectEmailAddress'",
                          timeout=10).json()["value"][0]["privilegeid"]
    assert wanted not in {p["PrivilegeId"] for p in privileges}
    ok = admin.patch(f"{api(ad)}/systemusers({bob['systemuserid']})", json={"emailrouteraccessapproval": 1},
                     headers={"If-Match": "*"}, timeout=10)
    assert ok.status_code == 204
    shown = admin.get(f"{api(ad)}/mailboxes({bob['_defaultmailbox_value']})",
                      params={"$select": "emailrouteraccessapproval"}, timeout=10).json()
    assert shown["emailrouteraccessapproval"] == 1


def test_test_and_enable_runs_later_and_reports_failure_with_the_servers_words(ad: Lab) -> None:
    assert ad.web is not None
    ad.web.set_knobs(test_delay=0.6)
    s = session(ad)
    box = s.get(f"{api(ad)}/mailboxes?$filter=name eq 'Lab Operator'", timeout=10).json()["value"][0]
    asked = time.monotonic()
    r = s.patch(f"{api(ad)}/mailboxes({box['mailboxid']})", json={"testemailconfigurationscheduled": True},
                headers={"If-Match": "*"}, timeout=10)
    assert r.status_code == 204
    right_after = s.get(f"{api(ad)}/mailboxes({box['mailboxid']})", timeout=10).json()
    assert right_after["testemailconfigurationscheduled"] is True and right_after["mailboxstatus"] == 0
    while True:
        now = s.get(f"{api(ad)}/mailboxes({box['mailboxid']})", timeout=10).json()
        if not now["testemailconfigurationscheduled"]:
            break
        assert time.monotonic() - asked < 10
        time.sleep(0.1)
    assert time.monotonic() - asked >= 0.6
    assert now["mailboxstatus"] == 2 and now["incomingemailstatus"] == 0  # Outlook delivery: not tested
    traces = s.get(f"{api(ad)}/tracelogs", timeout=10, params={
        "$filter": f"_regardingobjectid_value eq {box['mailboxid']} and level eq 3"}).json()["value"]
    assert "has no email server profile" in traces[-1]["text"]


def test_discovery_lists_the_organizations_the_user_belongs_to(ad: Lab) -> None:
    url = ad.config.webapi["discovery_url"]  # type: ignore[index]
    s = session(ad)
    listed = s.get(f"{url}/Instances", timeout=10).json()["value"]
    assert {i["UniqueName"] for i in listed} == {"contoso", "fabrikam"}
    one = s.get(f"{url}/Instances(UniqueName='contoso')", timeout=10).json()
    assert one["ApiUrl"] == api(ad) and one["Url"] == ad.config.web_url("contoso")


def test_faults_delay_deny_and_fail_requests(ad: Lab) -> None:
    assert ad.web is not None
    ad.web.set_knobs(fail_requests={"PATCH mailboxes": "SQL timeout expired"})
    s = session(ad)
    box = s.get(f"{api(ad)}/mailboxes?$top=1", timeout=10).json()["value"][0]
    failed = s.patch(f"{api(ad)}/mailboxes({box['mailboxid']})", json={"actdeliverymethod": 1},
                     headers={"If-Match": "*"}, timeout=10)
    assert failed.status_code == 500 and failed.json()["error"]["message"] == "SQL timeout expired"
    ad.web.set_knobs(deny_auth=True, fail_requests={})
    assert session(ad).get(f"{api(ad)}/WhoAmI", timeout=10).status_code == 401
    ad.web.set_knobs(deny_auth=False, delay=0.3)
    t = time.monotonic()
    assert session(ad).get(f"{api(ad)}/WhoAmI", timeout=10).status_code == 200
    assert time.monotonic() - t >= 0.3


def test_a_dropped_connection_once_after_n_requests(ad: Lab) -> None:
    assert ad.web is not None
    s = session(ad)
    assert s.get(f"{api(ad)}/WhoAmI", timeout=10).ok
    ad.web.set_knobs(drop_after=1)
    assert s.get(f"{api(ad)}/WhoAmI", timeout=10).ok
    with pytest.raises(requests.ConnectionError):
        s.get(f"{api(ad)}/WhoAmI", timeout=10)
    assert s.get(f"{api(ad)}/WhoAmI", timeout=10).ok  # once per setting


def test_the_client_certificate_site_fails_the_handshake_or_answers_403_7(ad: Lab) -> None:
    url = ad.config.webapi["client_certificate_site"] + "/api/data/v9.0/WhoAmI"  # type: ignore[index]
    with pytest.raises(requests.exceptions.SSLError) as caught:
        requests.get(url, verify=ad.config.ca_bundle, timeout=10)
    assert "certificate required" in str(caught.value).lower()
    assert ad.web is not None
    ad.web.set_knobs(client_certificate="iis")
    page = requests.get(url, verify=ad.config.ca_bundle, timeout=10)
    assert page.status_code == 403 and "403.7" in page.text


def test_the_world_keeps_the_records_and_lab_status_shows_them(ad: Lab) -> None:
    from psbridge.lab.webapi.status import status_tables
    from psbridge.lab.world import World

    tables = status_tables(World.load(ad.state_dir).data)
    boxes = tables["mailboxes"]
    assert set(boxes["organization"]) == {"contoso", "fabrikam"}
    assert "Support" in set(boxes["mailbox"])  # a queue's mailbox
    assert set(tables["email configuration"]["channel"]) == {"Email Router"}


# --- Internet-facing deployment, AD FS -------------------------------------------------------------------


def adfs_app(lab: Lab, client_id: str = LAB_CLIENT_ID) -> msal.PublicClientApplication:
    http = requests.Session()
    http.trust_env = False
    http.verify = lab.config.ca_bundle
    adfs = lab.config.webapi["adfs"]  # type: ignore[index]
    return msal.PublicClientApplication(client_id, authority=adfs["authority"], http_client=http,
                                        instance_discovery=False)


def scope(lab: Lab, org: str = "contoso") -> list[str]:
    # The resource inside the scope, as AD FS expects from MSAL: <resource>/<scope> (resource ends in /).
    return [lab.config.web_url(org).rstrip("/") + "//user_impersonation"]


def test_ifd_site_names_ad_fs_and_the_resource_in_its_401(lab: Lab) -> None:
    r = requests.get(f"{api(lab)}/WhoAmI", verify=lab.config.ca_bundle, timeout=10)
    assert r.status_code == 401
    adfs = lab.config.webapi["adfs"]  # type: ignore[index]
    assert r.headers["WWW-Authenticate"] == ('Bearer '
                                             f'authorization_uri="{adfs["authority"]}/oauth2/authorize", '
                                             f'resource_id="{lab.config.web_url("contoso")}/"')
    ntlm = session(lab).get(f"{api(lab)}/WhoAmI", timeout=10)
    assert ntlm.status_code == 401  # an IFD site takes AD FS tokens only


def test_msal_signs_in_with_a_password_and_crm_takes_the_token(lab: Lab) -> None:
    app = adfs_app(lab)
    got = app.acquire_token_by_username_password("crmadmin@lab.local", lab.password("crmadmin").reveal(),
                                                 scopes=scope(lab))
    assert "access_token" in got, got
    assert got["id_token_claims"]["upn"] == "crmadmin@lab.local"
    # The token is AD FS's: signed with the key of its JWKS, for the organization.
    keys = requests.get(lab.config.webapi["adfs"]["authority"] + "/discovery/keys",  # type: ignore[index]
                        verify=lab.config.ca_bundle, timeout=10).json()["keys"]
    key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(keys[0]))
    claims = jwt.decode(got["access_token"], key, algorithms=["RS256"],  # type: ignore[arg-type]
                        audience=lab.config.web_url("contoso") + "/")
    assert claims["unique_name"] == "LAB\\crmadmin" and claims["appid"] == LAB_CLIENT_ID
    me = requests.get(f"{api(lab)}/WhoAmI", verify=lab.config.ca_bundle, timeout=10,
                      headers={"Authorization": f"Bearer {got['access_token']}"})
    assert me.status_code == 200, me.text
    other = requests.get(f"{api(lab, 'fabrikam')}/WhoAmI", verify=lab.config.ca_bundle, timeout=10,
                         headers={"Authorization": f"Bearer {got['access_token']}"})
    assert other.status_code == 401 and "audience" in other.headers["WWW-Authenticate"]


def test_msal_device_code_and_refresh(lab: Lab) -> None:
    assert lab.adfs is not None
    lab.adfs.set_knobs(device_code_approval="manual")
    app = adfs_app(lab)
    flow = app.initiate_device_flow(scopes=scope(lab))
    assert flow["verification_uri"].endswith("/adfs/oauth2/deviceauth")
    assert lab.adfs.approve_device_code(flow["user_code"], "LAB\\operator")
    got = app.acquire_token_by_device_flow(flow)
    assert "access_token" in got, got
    account = app.get_accounts()[0]
    assert account["username"] == "operator@lab.local"
    again = app.acquire_token_silent(scope(lab), account=account, force_refresh=True)
    assert again and again["token_source"] == "identity_provider"
    assert again["access_token"] != got["access_token"]


def test_one_users_refresh_token_signs_in_to_another_organization(lab: Lab) -> None:
    """msal asks for a second organization's token with the first one's refresh token (AD FS's
    multi-resource refresh token): the token it gets is for the organization asked for."""
    app = adfs_app(lab)
    got = app.acquire_token_by_username_password("crmadmin@lab.local", lab.password("crmadmin").reveal(),
                                                 scopes=scope(lab))
    assert "access_token" in got, got
    other = app.acquire_token_silent(scope(lab, "fabrikam"), account=app.get_accounts()[0])
    assert other and other["token_source"] == "identity_provider"
    me = requests.get(f"{api(lab, 'fabrikam')}/WhoAmI", verify=lab.config.ca_bundle, timeout=10,
                      headers={"Authorization": f"Bearer {other['access_token']}"})
    assert me.status_code == 200, me.headers.get("WWW-Authenticate")


@pytest.mark.parametrize(("form", "error", "words"), [
    ({"client_id": "00000000-0000-0000-0000-00000000dead", "grant_type": "password"},
     "invalid_client", "MSIS9607"),
    ({"grant_type": "password", "username": "crmadmin@lab.local", "password": "wrong"},
     "invalid_grant", "MSIS9659"),
    ({"grant_type": "password", "username": "crmadmin@lab.local", "password": "x",
      "scope": "https://elsewhere.example//user_impersonation"}, "invalid_resource", "MSIS9602"),
    ({"grant_type": "client_credentials", "client_secret": "x"}, "unauthorized_client", "a user's token"),
])
def test_ad_fs_refuses_in_its_own_words(lab: Lab, form: dict[str, str], error: str, words: str) -> None:
    adfs = lab.config.webapi["adfs"]  # type: ignore[index]
    body = {"client_id": LAB_CLIENT_ID, "scope": scope(lab)[0], **form}
    r = requests.post(adfs["authority"] + "/oauth2/token", data=body, verify=lab.config.ca_bundle, timeout=10)
    assert r.status_code in (400, 401)
    assert r.json()["error"] == error and words in r.json()["error_description"]


def test_an_expired_or_refused_token_is_answered_as_rfc_6750_says(lab: Lab) -> None:
    assert lab.web is not None
    app = adfs_app(lab)
    token = app.acquire_token_by_username_password("crmadmin@lab.local", lab.password("crmadmin").reveal(),
                                                   scopes=scope(lab))["access_token"]
    lab.web.set_knobs(expire_tokens_before=time.time() + 1)
    r = requests.get(f"{api(lab)}/WhoAmI", verify=lab.config.ca_bundle, timeout=10,
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    said = r.headers["WWW-Authenticate"]
    assert 'error="invalid_token", error_description="The access token has expired"' in said


def test_the_chain_breaks_where_it_is_broken() -> None:
    """Each link of the S2S chain, broken on its own in an otherwise working world, is the one reported."""
    from psbridge.lab.webapi.serversidesync import chain_problem

    thumb = "AB" * 20
    tenant = "11111111-2222-3333-4444-555555555555"

    def world() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        profile = {"emailserverprofileid": "p", "name": "EXO", "servertype": 3,
                   "incomingcredentialretrieval": 2, "outgoingcredentialretrieval": 2,
                   "usedefaulttenantid": True, "statecode": 0}
        box = {"mailboxid": "m", "name": "Alice", "emailaddress": "alice@t.onmicrosoft.com",
               "emailserverprofile": {"id": "p"}, "emailrouteraccessapproval": 1,
               "regardingobjectid": {"type": "systemuser"}}
        org = {"settings": {"S2STenantId": tenant}, "crm": {"records": {
            "emailserverprofiles": [profile], "mailboxes": [box],
            "organizations": [{"requireapprovalforuseremail": True}]}}}
        data = {"deployment": {"server_settings": {"S2SDefaultAuthorizationServerPrincipalId": "x",
                                                   "S2SDefaultAuthorizationServerMetadataUrl": "y"},
                               "certificates": [{"certificate_type": "S2STokenIssuer", "thumbprint": thumb}]},
                "servers": [{"name": "CRM01", "roles": ["Asynchronous Processing Service"], "store": [
                    {"thumbprint": thumb, "has_private_key": True,
                     "key_readers": ["LAB\\CRMAsyncService"]}]}],
                "organizations": [org]}
        directory = {"tenant": {"id": tenant, "domain": "t.onmicrosoft.com"}, "servicePrincipals": [
            {"appId": "00000007-0000-0000-c000-000000000000",
             "keyCredentials": [{"customKeyIdentifier": thumb}]}]}
        return data, org, box, directory

    def problem(change: Any, allow: bool = True) -> str | None:
        data, org, box, directory = world()
        change(data, org, box, directory)
        return chain_problem(data, org, box, directory, allow, time.time(), "LAB\\CRMAsyncService")

    assert problem(lambda *a: None) is None
    cases = {
        "not an Exchange Online (Hybrid) profile":
            lambda d, o, b, t: o["crm"]["records"]["emailserverprofiles"][0].update(servertype=0),
        "has not been approved": lambda d, o, b, t: b.update(emailrouteraccessapproval=2),
        "ServerSettings": lambda d, o, b, t: d["deployment"]["server_settings"].update(
            S2SDefaultAuthorizationServerMetadataUrl=None),
        "not registered in the CRM configuration database":
            lambda d, o, b, t: d["deployment"].update(certificates=[]),
        "was not found in the LocalMachine\\My store of CRM01":
            lambda d, o, b, t: d["servers"][0].update(store=[]),
        "Keyset does not exist": lambda d, o, b, t: d["servers"][0]["store"][0].update(key_readers=[]),
        "AADSTS90002": lambda d, o, b, t: o["settings"].update(S2STenantId=None),
        "AADSTS700027": lambda d, o, b, t: t["servicePrincipals"][0].update(keyCredentials=[]),
        "ErrorNonExistentMailbox": lambda d, o, b, t: b.update(emailaddress="alice@contoso.local"),
    }
    for words, change in cases.items():
        said = problem(change)
        assert said is not None and words in said, (words, said)
    assert "allow-listed" in (problem(lambda *a: None, allow=False) or "")
