"""The Graph client against the twin: throttling, outages, paging, errors."""

from __future__ import annotations

import socket

import pytest

from psbridge.cloud import CloudSettings, GraphClient, GraphError, SignIn
from psbridge.errors import ForeignHostRefused, LabConfigError, ParameterError
from psbridge.lab.entra import EntraTwin


class Sleeps(list[float]):
    """Records the waits the client asked for, instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _client(twin: EntraTwin, admin: SignIn, **kw) -> tuple[GraphClient, Sleeps]:  # type: ignore[no-untyped-def]
    sleeps = Sleeps()
    return GraphClient(CloudSettings.from_lab(twin.describe()), admin, sleep=sleeps, **kw), sleeps


def test_throttling_is_survived_honouring_retry_after(twin: EntraTwin, admin: SignIn) -> None:
    told = Sleeps()  # what the client tells its caller, so that the tenant's other callers hold off too
    graph, sleeps = _client(twin, admin, on_retry_after=told)
    twin.set_knobs(throttle=2, retry_after=7)
    assert graph.get("/organization")["value"][0]["id"] == twin.tenant_id
    assert sleeps == [7.0, 7.0] and graph.retries == 2
    assert told == [7.0, 7.0]
    assert twin.knobs.get("throttle") == 0


def test_service_unavailable_is_retried(twin: EntraTwin, admin: SignIn) -> None:
    graph, sleeps = _client(twin, admin)
    twin.set_knobs(unavailable=1, retry_after=2)
    assert graph.get_all("/servicePrincipals", {"$filter": "appId eq '00000003-0000-0000-c000-000000000000'"})
    assert sleeps == [2.0]


def test_retry_budget_is_bounded(twin: EntraTwin, admin: SignIn) -> None:
    told = Sleeps()
    graph, sleeps = _client(twin, admin, retry_budget=60, on_retry_after=told)
    twin.set_knobs(throttle=10, retry_after=25)
    with pytest.raises(GraphError) as e:
        graph.get("/organization")
    assert (e.value.status, e.value.code) == (429, "TooManyRequests")
    assert sleeps == [25.0, 25.0] and e.value.attempts == 3
    assert told == sleeps  # a wait past the budget is not honoured, so not told
    assert e.value.request_id and "after 3 attempts" in str(e.value)

    graph, sleeps = _client(twin, admin, max_attempts=2)
    with pytest.raises(GraphError):
        graph.get("/organization")
    assert len(sleeps) == 1


def test_paging_follows_next_link(twin: EntraTwin, admin: SignIn) -> None:
    graph, _ = _client(twin, admin)
    twin.set_knobs(page_size=2)
    first = graph.get("/servicePrincipals")
    assert len(first["value"]) == 2 and "@odata.nextLink" in first
    everything = graph.get_all("/servicePrincipals", {"$select": "id,appId"})
    assert len(everything) == len(twin.directory.objects("servicePrincipals")) >= 7
    assert len({sp["id"] for sp in everything}) == len(everything)
    assert set(everything[0]) == {"id", "appId"}


def test_next_link_to_another_host_is_refused(twin: EntraTwin, admin: SignIn) -> None:
    graph, _ = _client(twin, admin)
    with pytest.raises(ForeignHostRefused, match="another host"):
        graph.get("https://127.0.0.2:1/v1.0/organization")


def test_errors_carry_graph_code_message_and_request_id(twin: EntraTwin, admin: SignIn) -> None:
    graph, _ = _client(twin, admin)
    with pytest.raises(GraphError) as e:
        graph.get("/applications/00000000-0000-0000-0000-000000000000")
    assert (e.value.status, e.value.code) == (404, "Request_ResourceNotFound")
    assert "does not exist" in e.value.message and e.value.request_id
    with pytest.raises(GraphError) as e:
        graph.get("/applications", {"$filter": "tags eq 'x'"})
    assert e.value.code == "Request_UnsupportedQuery"


def test_unreachable_graph_fails_without_leaving_loopback(twin: EntraTwin, admin: SignIn) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = CloudSettings.from_lab(twin.describe()).with_(graph_url=f"https://127.0.0.1:{port}", timeout=5)
    with pytest.raises(GraphError) as e:
        GraphClient(settings, admin).get("/organization")
    assert e.value.code == "Unreachable" and e.value.status == 0


def test_clouds_are_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    assert CloudSettings.named("global").graph_default_scope == "https://graph.microsoft.com/.default"
    assert CloudSettings.named("usgov").authority("contoso.us") == "https://login.microsoftonline.us/contoso.us"
    assert CloudSettings.named("china").graph_url == "https://microsoftgraph.chinacloudapi.cn"
    with pytest.raises(ParameterError, match="unknown cloud"):
        CloudSettings.named("mars")
    described = {"state_dir": str(tmp_path), "service_account": "LAB\\CRMAsyncService",
                 "tools_folder": "C:\\T", "ca_bundle": "/x/ca.pem"}
    (tmp_path / "lab.json").write_text(json.dumps({**described, "entra": {
        "login_url": "https://127.0.0.1:1", "graph_url": "https://127.0.0.1:2"}}))
    lab = CloudSettings.from_lab(tmp_path)
    assert (lab.name, lab.ca_bundle, lab.instance_discovery) == ("lab", "/x/ca.pem", False)
    assert lab.graph_default_scope == "https://graph.microsoft.com/.default"
    (tmp_path / "lab.json").write_text(json.dumps({**described, "servers": []}))
    with pytest.raises(LabConfigError, match="no Entra ID twin"):
        CloudSettings.from_lab(tmp_path / "lab.json")
    (tmp_path / "lab.json").write_text(json.dumps({"servers": []}))
    with pytest.raises(LabConfigError, match="not a lab description"):
        CloudSettings.from_lab(tmp_path)
