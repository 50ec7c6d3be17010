"""The filters that turn the client inventory into role parameters, and the rules of the
client inventory stated in Python (route destinations, phone account names)."""

from __future__ import annotations

import pytest

from wagw import (
    NO_PSTN_RULE,
    wagw_audit_failures,
    wagw_destination_errors,
    wagw_media_cpu_error,
    wagw_phone_name_errors,
    wagw_route_destinations,
    wagw_route_windows,
    wagw_sip_accounts,
)

META_RULE = "Meta's terms disallow the PSTN on any leg of a WhatsApp call"


def test_sip_accounts_carry_the_srtp_mode_of_each_number_when_asked() -> None:
    numbers = [
        {"number": "+4930555000100", "sip_password": "a"},
        {"number": "+4930555000122", "sip_password": "b", "srtp_key_exchange": "DTLS"},
    ]
    assert [a["media_encryption"] for a in wagw_sip_accounts(numbers, "SDES")] == ["sdes", "dtls"]
    assert "media_encryption" not in wagw_sip_accounts(numbers)[0]


def test_sip_accounts_renames_the_password_key() -> None:
    numbers = [{"number": "+4930555000100", "phone_number_id": "1", "sip_password": "s3cret"}]
    assert wagw_sip_accounts(numbers) == [{"number": "+4930555000100", "password": "s3cret"}]


def test_sip_accounts_rejects_an_item_without_password() -> None:
    with pytest.raises(ValueError, match="sip_password"):
        wagw_sip_accounts([{"number": "+4930555000100"}])


ROUTES = [
    {"whatsapp_number": "+4930555000100", "destinations": ["phone:empfang"],
     "windows": [{"days": ["mon"], "start": "08:00", "end": "18:00",
                  "destinations": ["pbx:21", "phone:empfang"]}]},
    {"whatsapp_number": "+4930555000101", "destinations": ["phone:werkstatt"]},
]


def routes(*destinations: str, window: tuple[str, ...] = ()) -> list[dict]:
    """One route with these default destinations and, if given, one window with those."""
    route: dict = {"whatsapp_number": "+4930555000100", "destinations": list(destinations)}
    if window:
        route["windows"] = [{"days": ["mon"], "start": "08:00", "end": "18:00", "destinations": list(window)}]
    return [route]


def test_route_windows_are_flat_with_number_and_index() -> None:
    windows = wagw_route_windows(ROUTES)
    assert [(w["whatsapp_number"], w["index"], w["start"]) for w in windows] == [("+4930555000100", 0, "08:00")]


def test_route_destinations_include_windows_once() -> None:
    assert wagw_route_destinations(ROUTES) == ["phone:empfang", "phone:werkstatt", "pbx:21"]


# wagw_destination_errors: phone:<name> of wagw_phones or pbx:<extension> with wagw_pbx, never
# the PSTN.


def test_known_phones_and_pbx_extensions_are_fine() -> None:
    assert wagw_destination_errors(ROUTES, ["empfang", "werkstatt"], True) == []


def test_pbx_extensions_with_star_are_fine() -> None:
    assert wagw_destination_errors(routes("pbx:*21", "pbx:0"), [], True) == []


def test_a_phone_that_is_no_account_is_refused() -> None:
    errors = wagw_destination_errors(routes("phone:empfang", "phone:keller"), ["empfang", "werkstatt"], False)
    assert errors == ["phone:keller names no phone account ['empfang', 'werkstatt']"]


def test_a_pbx_extension_without_a_pbx_is_refused() -> None:
    errors = wagw_destination_errors(routes("phone:empfang", "pbx:21"), ["empfang"], False)
    assert errors == ["pbx:21 names a PBX extension, but there is no PBX"]


def test_the_default_has_a_pbx() -> None:
    assert wagw_destination_errors(routes("pbx:21"), []) == []


@pytest.mark.parametrize("number", [
    "+4930123456", "030123456", "tel:+4930123456", "sip:+4930123456@carrier.example", "sips:030123456",
    "+49 30 123456", "030/123-456",
])
def test_a_phone_number_is_refused_with_metas_rule(number: str) -> None:
    errors = wagw_destination_errors(routes("phone:empfang", number), ["empfang"], True)
    assert len(errors) == 1
    assert errors[0].startswith(f"[{number!r}] are phone numbers (the PSTN): {META_RULE}")
    assert "phone:<name>" in errors[0]
    assert "pbx:<extension>" in errors[0]


def test_a_phone_number_in_a_window_is_refused_with_metas_rule() -> None:
    errors = wagw_destination_errors(routes("phone:empfang", window=("+4930123457",)), ["empfang"], True)
    assert len(errors) == 1
    assert "'+4930123457'" in errors[0]
    assert META_RULE in errors[0]


def test_phone_numbers_come_first_in_one_sentence() -> None:
    errors = wagw_destination_errors(routes("phone:keller", "+4930123456", "030123456"), ["empfang"], True)
    assert len(errors) == 2
    assert errors[0].startswith("['+4930123456', '030123456'] are phone numbers (the PSTN): ")
    assert errors[1] == "phone:keller names no phone account ['empfang']"


@pytest.mark.parametrize("garbage", [
    "empfang", "phone:Empfang", "phone:1st", "phone:", "pbx:", "pbx:21a", "fax:21", "PJSIP/empfang",
    "phone:" + "a" * 33, "pbx:" + "1" * 21, "phone:empfang&pbx:21", "",
])
def test_anything_else_is_refused_as_neither_phone_nor_pbx(garbage: str) -> None:
    errors = wagw_destination_errors(routes(garbage), None, True)
    assert errors == [
        f"{garbage} is neither phone:<name> (lower-case letters, digits and _) nor pbx:<extension> "
        "(up to 8 digits and *, no leading 0 before more digits: that is an outside line)"
    ]
    assert META_RULE not in errors[0]


@pytest.mark.parametrize("extension", ["0301234567", "00491701234567", "01"])
def test_pbx_extension_with_an_outside_line_prefix_is_refused_with_metas_rule(extension: str) -> None:
    errors = wagw_destination_errors(routes(f"pbx:{extension}"), None, True)
    assert errors == [f"pbx:{extension} would dial an outside line at the PBX (a leading 0): {NO_PSTN_RULE}"]


@pytest.mark.parametrize("extension", ["0", "21", "**610", "12345678"])
def test_pbx_extensions_pass(extension: str) -> None:
    assert wagw_destination_errors(routes(f"pbx:{extension}"), None, True) == []


def test_without_phone_names_any_valid_name_is_fine() -> None:
    assert wagw_destination_errors(routes("phone:anyone", "phone:a_1", "phone:" + "x" * 32), None, False) == []


def test_an_empty_list_of_phone_names_knows_no_phone() -> None:
    assert wagw_destination_errors(routes("phone:empfang"), [], True) == ["phone:empfang names no phone account []"]


def test_routes_without_destinations_are_fine() -> None:
    assert wagw_destination_errors([{"whatsapp_number": "+4930555000100", "destinations": []}], [], False) == []


# wagw_phone_name_errors: names of wagw_phones.accounts are valid and unique.


def test_valid_unique_phone_names_are_fine() -> None:
    phones = {"accounts": [{"name": "empfang", "password": "x"}, {"name": "werkstatt_2", "password": "y"}]}
    assert wagw_phone_name_errors(phones) == []


def test_no_phones_have_no_name_errors() -> None:
    assert wagw_phone_name_errors(None) == []
    assert wagw_phone_name_errors({}) == []


@pytest.mark.parametrize("name", ["Empfang", "1st", "emp-fang", "emp fang", "", "a" * 33])
def test_an_invalid_phone_name_is_refused(name: str) -> None:
    errors = wagw_phone_name_errors({"accounts": [{"name": "empfang"}, {"name": name}]})
    assert errors == [
        f"{name!r} is not a valid name (lower-case letter first, then letters, digits and _, at most 32)"
    ]


def test_a_phone_without_a_name_is_refused() -> None:
    assert wagw_phone_name_errors({"accounts": [{"password": "x"}]})[0].startswith("'None' is not a valid name")


def test_a_duplicate_phone_name_is_refused_once() -> None:
    phones = {"accounts": [{"name": "empfang"}, {"name": "werkstatt"}, {"name": "empfang"}, {"name": "empfang"}]}
    assert wagw_phone_name_errors(phones) == ["'empfang' is listed twice"]


def test_audit_failures_are_the_controls_that_did_not_pass_with_their_host() -> None:
    evidence = [
        {"host": "edge", "passed": False, "controls": [
            {"id": "TLS-PROTO", "object": "kamailio", "passed": True},
            {"id": "NET-FIREWALL", "object": "inet wagw_filter", "passed": False, "detail": "5061 open to all"}]},
        {"host": "media", "passed": False, "controls": [{"id": "RET-CDR", "object": "wagw.csv", "passed": False}]},
        {"host": "bridge", "passed": True, "controls": []},
    ]
    assert wagw_audit_failures(evidence) == [
        {"host": "edge", "id": "NET-FIREWALL", "object": "inet wagw_filter", "passed": False,
         "detail": "5061 open to all"},
        {"host": "media", "id": "RET-CDR", "object": "wagw.csv", "passed": False}]
    assert wagw_audit_failures(evidence[2:]) == []


# A media node's CPU against the client's peak: 1.9 % of a core per transcoded call (benchmarks/calls.sh),
# 80 % of every core for the calls.
@pytest.mark.parametrize(("calls", "cores", "fits"), [(50, 2, True), (84, 2, True), (85, 2, False),
                                                      (200, 2, False), (200, 5, True), (2000, 48, True)])
def test_a_media_node_carries_the_peak_within_its_cpu_budget(calls: int, cores: int, fits: bool) -> None:
    assert (wagw_media_cpu_error(calls, cores, 1.9, 80) == "") is fits


def test_a_too_small_media_node_is_told_how_many_calls_it_carries_and_what_it_needs() -> None:
    error = wagw_media_cpu_error(200, 2, 1.9, 80)
    assert error.startswith("200 calls at once at 1.9 % of a core each need 380 % of a core, but 2 cores within "
                            "80 % give 160 %: this node carries 84 calls."), error
    assert "(at least 5 cores)" in error
