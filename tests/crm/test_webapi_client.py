"""psbridge's CRM Web API client over the wire against the lab: the sign-in each deployment asks for,
one connection reused, tokens renewed ahead of expiry and once after a refusal (never in a loop), the
client-certificate site's plain error, OData conventions and the server's own errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from psbridge import secrets
from psbridge.crm.webapi import (
    ClientCertificateRequired,
    MetadataMismatch,
    ODataError,
    SignInFailed,
    SignInKind,
    TokenRefused,
    WebApi,
    WebApiError,
    WebApiUnreachable,
    probe,
)
from psbridge.lab.orchestrator import Lab


@pytest.fixture(scope="module")
def ad_lab(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    import shutil

    state = tmp_path_factory.mktemp("client-ad")
    for key in lab_keys.rglob("*.pem"):
        target = state / key.relative_to(lab_keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(key, target)
    lab = Lab(state, servers=1, orgs=2, webapi="ad").start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def ad(ad_lab: Lab) -> Iterator[Lab]:
    before = os.environ.get("PSBRIDGE_LAB_STATE")
    os.environ["PSBRIDGE_LAB_STATE"] = str(ad_lab.state_dir)
    yield ad_lab
    assert ad_lab.web is not None
    ad_lab.web.reset_knobs()
    if before is not None:
        os.environ["PSBRIDGE_LAB_STATE"] = before


def ad_api(lab: Lab, account: str = "crmadmin", **kw: Any) -> WebApi:
    return WebApi.connect(lab.config.web_url("contoso"), user=lab.config.account(account).user,
                          password=lab.password(account), ca_bundle=lab.config.ca_bundle, **kw)


def claims_api(lab: Lab, tmp_path: Path, **kw: Any) -> WebApi:
    adfs = lab.config.webapi["adfs"]  # type: ignore[index]
    kw = {"adfs_client_id": adfs["client_id"], "on_code": lambda c: None, **kw}
    return WebApi.connect(lab.config.web_url("contoso"), ca_bundle=lab.config.ca_bundle,
                          cache_dir=tmp_path / "cache", **kw)


# --- which sign-in ------------------------------------------------------------------------------------


def test_the_organization_says_which_sign_in_it_wants(ad: Lab, lab: Lab) -> None:
    windows = probe(ad.config.web_url("contoso"), ca_bundle=ad.config.ca_bundle)
    assert windows.kind == SignInKind.ACTIVE_DIRECTORY and windows.schemes == ("Negotiate", "NTLM")
    claims = probe(lab.config.web_url("contoso"), ca_bundle=lab.config.ca_bundle)
    assert claims.kind == SignInKind.CLAIMS
    assert claims.authority == lab.config.webapi["adfs"]["authority"]  # type: ignore[index]
    assert claims.resource == lab.config.web_url("contoso") + "/"
    assert "AD FS" in claims.describe()


# --- Active Directory ------------------------------------------------------------------------------


def test_active_directory_sign_in_once_for_a_whole_conversation(ad: Lab) -> None:
    with ad_api(ad) as api:
        assert api.kind == SignInKind.ACTIVE_DIRECTORY
        me = api.whoami()
        user = api.get(f"systemusers({me.user_id})", {"$select": "domainname"})
        assert user["domainname"] == "LAB\\crmadmin"
        for _ in range(10):
            api.get("WhoAmI")
        # One Negotiate handshake: IIS signed in the connection, which stays open for the rest.
        assert api.auth.handshakes == 1  # type: ignore[attr-defined]
        assert "LAB\\crmadmin" in repr(api) and "Active Directory" in repr(api)


def test_channel_bindings_satisfy_extended_protection(ad: Lab) -> None:
    assert ad.web is not None
    ad.web.set_knobs(extended_protection=True)
    with ad_api(ad) as api:
        assert api.whoami().user_id


def test_a_wrong_password_is_a_plain_sign_in_failure_that_names_no_secret(ad: Lab) -> None:
    wrong = secrets.Secret("Wr0ng-canary-p@ss")
    with pytest.raises(SignInFailed) as caught:
        WebApi.connect(ad.config.web_url("contoso"), user="LAB\\crmadmin", password=wrong,
                       ca_bundle=ad.config.ca_bundle)
    assert "refused the sign-in of LAB\\crmadmin (401)" in str(caught.value)
    assert "Wr0ng" not in str(caught.value) and "Wr0ng" not in repr(caught.value)


def test_the_client_certificate_site_gets_a_plain_error(ad: Lab) -> None:
    site = ad.config.webapi["client_certificate_site"]  # type: ignore[index]
    for mode, how in (("tls", "the TLS handshake asked for a client certificate"), ("iis", "IIS answered "
                                                                                           "403.7")):
        assert ad.web is not None
        ad.web.set_knobs(client_certificate=mode)
        with pytest.raises(ClientCertificateRequired) as caught:
            WebApi.connect(site, user="LAB\\crmadmin", password=ad.password("crmadmin"),
                           ca_bundle=ad.config.ca_bundle)
        said = str(caught.value)
        assert how in said and "cannot sign in with client certificates" in said
        assert "Traceback" not in said and "SSLError" not in said


def test_odata_conventions_and_the_servers_own_errors(ad: Lab, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    os.environ["PSBRIDGE_JOURNAL"] = str(journal)
    try:
        with ad_api(ad) as api:
            pid = api.create("emailserverprofiles", {"name": "conventions", "servertype": 3})
            record = api.get(f"emailserverprofiles({pid})")
            assert record["name"] == "conventions" and record["@odata.etag"].startswith('W/"')
            made = api.create_returning("emailserverprofiles", {"name": "shown", "servertype": 3})
            assert made["name"] == "shown"
            with pytest.raises(ODataError) as caught:
                api.update("emailserverprofiles", "00000000-0000-0000-0000-0000000000aa", {"name": "x"})
            e = caught.value
            assert e.status == 404 and e.code == "0x80040217" and e.request_id
            missing = "00000000-0000-0000-0000-0000000000aa"
            assert f"emailserverprofile With Id = {missing} Does Not Exist" in str(e)
            with pytest.raises(ODataError) as bad:
                api.update("emailserverprofiles", pid, {"servertype": 12})
            assert bad.value.code == "0x8004431a" and "outside the valid range" in bad.value.message
            api.update("emailserverprofiles", pid, {"useautodiscover": True})
            assert api.get(f"emailserverprofiles({pid})", {"$select": "useautodiscover"})["useautodiscover"]
    finally:
        os.environ.pop("PSBRIDGE_JOURNAL", None)
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    intents = [(e["action"], e["where"]) for e in entries if e["event"] == "intent"]
    assert ("POST emailserverprofiles", "CRM contoso") in intents
    assert ("PATCH emailserverprofiles", "CRM contoso") in intents
    outcomes = [e["outcome"] for e in entries if e["event"] == "outcome"]
    assert outcomes.count("failed") == 2 and outcomes.count("done") == 3


def test_paging_follows_next_links_to_the_same_host_only(ad: Lab) -> None:
    with ad_api(ad) as api:
        users = api.get_all("systemusers", {"$select": "fullname"}, page_size=2)
        assert len(users) == 6
        with pytest.raises(WebApiError, match="another host"):
            api.get("https://elsewhere.example/api/data/v9.0/systemusers")


def test_metadata_is_read_once_and_names_what_is_missing(ad: Lab) -> None:
    with ad_api(ad) as api:
        api.metadata.require("mailboxes", ["incomingemaildeliverymethod", "actdeliverymethod"],
                             ["emailserverprofile"])
        before = api.requests
        api.metadata.require("organizations", ["emailconnectionchannel"], ["defaultemailserverprofileid"])
        assert api.requests == before  # read once
        with pytest.raises(MetadataMismatch) as caught:
            api.metadata.require("mailboxes", ["actdelivery"], ["_emailserverprofile_value"])
        said = str(caught.value)
        assert "'actdelivery' (the organization has 'actdeliverymethod')" in said
        assert "the organization has 'emailserverprofile'" in said
        with pytest.raises(MetadataMismatch, match="did you mean mailboxes"):
            api.metadata.require("mailboxs")


def test_a_dropped_read_is_sent_once_more_and_a_dropped_create_is_not(ad: Lab) -> None:
    assert ad.web is not None
    with ad_api(ad) as api:
        ad.web.set_knobs(drop_after=0)
        assert api.get("WhoAmI")["UserId"]  # dropped, then sent again on a new connection
        ad.web.set_knobs(drop_after=0)
        with pytest.raises(WebApiUnreachable, match="may or may not have happened"):
            api.create("emailserverprofiles", {"name": "dropped", "servertype": 3})


def test_discovery_lists_the_users_organizations(ad: Lab) -> None:
    with ad_api(ad) as api:
        found = {i.unique_name: i for i in api.discover()}
        assert set(found) == {"contoso", "fabrikam"} and found["contoso"].api_url == api.base


# --- claims (AD FS) ----------------------------------------------------------------------------------


def test_claims_sign_in_with_a_device_code_and_the_token_cache(lab: Lab, tmp_path: Path) -> None:
    assert lab.adfs is not None
    codes: list[str] = []
    with claims_api(lab, tmp_path, on_code=lambda c: codes.append(c.user_code)) as api:
        assert api.kind == SignInKind.CLAIMS and len(codes) == 1
        assert api.sign_in.username == "crmadmin@lab.local"
        user = api.get(f"systemusers({api.whoami().user_id})", {"$select": "domainname"})
        assert user["domainname"] == "LAB\\crmadmin"
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert [p.name for p in cached] == ["crmadmin@lab.local.json"]
    lab.adfs.journal.take()
    with claims_api(lab, tmp_path, user="crmadmin@lab.local", on_code=lambda c: codes.append(c.user_code)):
        assert len(codes) == 1  # no second device code: the cached sign-in
    assert not [s for s in lab.adfs.journal.take() if s.path.endswith("devicecode")]


def test_username_and_password_only_with_a_confidential_client(lab: Lab, tmp_path: Path) -> None:
    adfs = lab.config.webapi["adfs"]  # type: ignore[index]
    with pytest.raises(SignInFailed, match="needs a confidential client"):
        claims_api(lab, tmp_path, user="operator@lab.local", password=lab.password("operator"),
                   adfs_sign_in="password")
    secret = secrets.resolve(adfs["client_secret_ref"])
    with claims_api(lab, tmp_path, user="operator@lab.local", password=lab.password("operator"),
                    adfs_sign_in="password", adfs_client_id=adfs["confidential_client_id"],
                    adfs_client_secret=secret) as api:
        assert api.sign_in.username == "operator@lab.local" and "confidential" in api.describe()["client"]
    with pytest.raises(SignInFailed, match="MSIS9659"):
        claims_api(lab, tmp_path / "other", user="operator@lab.local", password=secrets.Secret("nope-nope"),
                   adfs_sign_in="password", adfs_client_id=adfs["confidential_client_id"],
                   adfs_client_secret=secret)


def test_a_token_expired_mid_step_is_renewed_once(lab: Lab, tmp_path: Path) -> None:
    assert lab.web is not None
    with claims_api(lab, tmp_path) as api:
        lab.web.set_knobs(expire_next=1)
        assert api.get("WhoAmI")["UserId"]
        assert api.auth.renewals == 1  # type: ignore[attr-defined]
        assert api.get("WhoAmI")["UserId"] and api.auth.renewals == 1  # type: ignore[attr-defined]


def test_a_token_refused_twice_stops_with_a_clear_error_and_no_loop(lab: Lab, tmp_path: Path) -> None:
    assert lab.web is not None and lab.adfs is not None
    with claims_api(lab, tmp_path) as api:
        lab.web.set_knobs(refuse_tokens=True)
        lab.adfs.journal.take()
        with pytest.raises(TokenRefused) as caught:
            api.get("WhoAmI")
        said = str(caught.value)
        assert "refused the bearer token twice: The access token has expired" in said
        assert "renewed it once and does not try again" in said
        assert api.auth.renewals == 1  # type: ignore[attr-defined]
        refreshes = [s for s in lab.adfs.journal.take() if s.path.rstrip("/").endswith("/oauth2/token")]
        assert len(refreshes) == 1  # one renewal at AD FS, not a loop


def test_tokens_are_renewed_ahead_of_expiry(lab: Lab, tmp_path: Path) -> None:
    """A token that would expire within msal's five minutes is replaced before it is sent, so CRM never
    has to refuse it; a token an hour from expiry is kept."""
    assert lab.adfs is not None
    with claims_api(lab, tmp_path) as long_lived:
        lab.adfs.journal.take()
        for _ in range(3):
            long_lived.get("WhoAmI")
        assert not [s for s in lab.adfs.journal.take() if "/oauth2/token" in s.path]
    lab.adfs.set_knobs(token_lifetime=120)
    with claims_api(lab, tmp_path / "short") as short_lived:
        lab.adfs.journal.take()
        for _ in range(3):
            short_lived.get("WhoAmI")
        assert len([s for s in lab.adfs.journal.take() if "/oauth2/token" in s.path]) == 3
        assert short_lived.auth.renewals == 0  # type: ignore[attr-defined]


def test_claims_site_refuses_windows_authentication_and_client_credentials(lab: Lab, tmp_path: Path) -> None:
    with pytest.raises(WebApiError, match="name the client registered there"):
        WebApi.connect(lab.config.web_url("contoso"), ca_bundle=lab.config.ca_bundle)

