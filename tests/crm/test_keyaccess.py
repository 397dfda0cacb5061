"""Who may read a key file, by its rules: the service account's spellings, deny over allow, the rights."""

from __future__ import annotations

from psbridge.crm.keyaccess import AccessRule, key_access, normal_identity, rule_of

SERVER = "CRM01"
OWN = [AccessRule("NT AUTHORITY\\SYSTEM", "FullControl", True),
       AccessRule("BUILTIN\\Administrators", "FullControl", True)]


def test_win32_service_spellings_meet_the_acl_spellings() -> None:
    assert normal_identity("NT AUTHORITY\\NetworkService", SERVER) == \
        normal_identity("NT AUTHORITY\\NETWORK SERVICE", SERVER)
    assert normal_identity("LocalSystem", SERVER) == normal_identity("NT AUTHORITY\\SYSTEM", SERVER)
    assert normal_identity(".\\crmsvc", SERVER) == normal_identity("crm01\\CRMSVC", SERVER)
    assert normal_identity("LAB\\a", SERVER) != normal_identity("OTHER\\a", SERVER)


def test_a_read_rule_for_the_account_in_another_case_allows() -> None:
    rules = [*OWN, AccessRule("lab\\crmasyncservice", "Read, Synchronize", True)]
    got = key_access("LAB\\CRMAsyncService", rules, SERVER)
    assert got.may_read is True and "lab\\crmasyncservice" in got.why


def test_network_service_reads_by_its_acl_name() -> None:
    rules = [*OWN, AccessRule("NT AUTHORITY\\NETWORK SERVICE", "ReadAndExecute, Synchronize", True)]
    assert key_access("NT AUTHORITY\\NetworkService", rules, SERVER).may_read is True


def test_only_the_systems_rules_do_not_allow_the_account() -> None:
    got = key_access("LAB\\CRMAsyncService", OWN, SERVER)
    assert got.may_read is False and got.why == "no rule allows it to read"
    assert key_access("LocalSystem", OWN, SERVER).may_read is True


def test_a_deny_wins_over_an_allow_also_through_everyone() -> None:
    rules = [*OWN, AccessRule("LAB\\CRMAsyncService", "FullControl", True),
             AccessRule("Everyone", "Read", False)]
    got = key_access("LAB\\CRMAsyncService", rules, SERVER)
    assert got.may_read is False and "deny" in got.why and "Everyone" in got.why


def test_rights_without_read_data_do_not_count_and_generic_read_does() -> None:
    write_only = [AccessRule("LAB\\CRMAsyncService", "Write, Synchronize", True)]
    assert key_access("LAB\\CRMAsyncService", write_only, SERVER).may_read is False
    generic_read = [AccessRule("LAB\\CRMAsyncService", str(-2147483648), True)]
    assert key_access("LAB\\CRMAsyncService", generic_read, SERVER).may_read is True
    # A deny of writing alone leaves reading allowed.
    mixed = [AccessRule("LAB\\CRMAsyncService", "Read", True),
             AccessRule("LAB\\CRMAsyncService", "Write", False)]
    assert key_access("LAB\\CRMAsyncService", mixed, SERVER).may_read is True


def test_a_upn_is_not_compared_with_domain_names() -> None:
    rules = [*OWN, AccessRule("LAB\\crmsvc", "Read", True)]
    got = key_access("crmsvc@lab.example", rules, SERVER)
    assert got.may_read is None and "user@domain" in got.why


class Received:
    """A deserialized rule: properties looked up without case, as the bridge's records are."""

    def __init__(self, **props: object) -> None:
        self.props = {k.lower(): v for k, v in props.items()}

    def get_ci(self, name: str) -> object:
        return self.props.get(name.lower())


def test_rules_arriving_with_enums_as_values_read_as_with_names() -> None:
    by_value = rule_of(Received(IdentityReference="LAB\\CRMAsyncService", FileSystemRights=1179785,
                                AccessControlType=0))
    assert by_value == AccessRule("LAB\\CRMAsyncService", "1179785", True) and by_value.reads
    denied = rule_of(Received(IdentityReference="Everyone", FileSystemRights="Read", AccessControlType=1))
    assert denied.allow is False
    named = rule_of(Received(IdentityReference="x\\y", FileSystemRights="Write", AccessControlType="Allow"))
    assert named.allow and not named.reads
