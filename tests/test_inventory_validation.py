"""playbooks/validate.yml: a bad client inventory stops the play with a message that names
the client, the key and the rule; the example inventory passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, resolved, run_validate, vault, vault_args

META_RULE = "Meta's terms disallow the PSTN on any leg of a WhatsApp call"
# A business-hours window of the example's route.
WINDOW = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00",
          "destinations": ["phone:empfang", "phone:werkstatt"]}


def edit(inventory: Path, name: str, change) -> None:
    path = inventory / "group_vars" / "all" / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def add(inventory: Path, name: str, data: dict[str, Any]) -> None:
    """Adds a file of group variables to the inventory."""
    (inventory / "group_vars" / "all" / name).write_text(yaml.safe_dump(data))


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The message of the task that stopped the play: the msg of the first failed result,
    read back from the YAML the callback prints (as one line, unquoted)."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "failed=1" in result.stdout, result.stdout
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^(fatal|failed): \[", line))
    block: list[str] = []
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return str(yaml.safe_load(textwrap.dedent("\n".join(block)))["msg"])


def test_example_inventory_is_valid(example_inventory: Path, tmp_path: Path) -> None:
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout


def test_missing_sip_domain_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "whatsapp.yml", lambda d: d["wagw_whatsapp"].pop("sip_domain"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "sip_domain" in result.stdout


def test_missing_tls_mode_is_refused_not_defaulted_to_a_lab_ca(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "tls.yml", lambda d: d["wagw_tls"].pop("mode"))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert "missing required arguments: mode found in wagw_tls" in message, message


# No PSTN on a WhatsApp call: a route rings phone:<name> (wagw_phones) or pbx:<extension>
# (wagw_pbx), never a phone number, however it is written.


@pytest.mark.parametrize("number", ["+4930123456", "030123456", "+49900123456", "tel:+4930123456",
                                    "sip:+4930123456@carrier.example"])
def test_a_route_to_a_phone_number_is_refused_with_metas_rule(example_inventory: Path, tmp_path: Path,
                                                               number: str) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(destinations=["phone:empfang", number]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(
        f"client example: wagw_routes[].destinations (windows included): [{number!r}] are phone numbers "
        f"(the PSTN): {META_RULE}"
    ), message
    assert "phone:<name>" in message
    assert "pbx:<extension>" in message


def test_a_window_to_a_phone_number_is_refused_with_metas_rule(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml",
         lambda d: d["wagw_routes"][0].update(windows=[{**WINDOW, "destinations": ["phone:empfang", "+4930123457"]}]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(
        "client example: wagw_routes[].destinations (windows included): ['+4930123457'] are phone numbers "
        f"(the PSTN): {META_RULE}"
    ), message


@pytest.mark.parametrize(("destination", "reason"), [
    ("phone:unknown", "phone:unknown names no phone account ['empfang', 'werkstatt']."),
    ("pbx:21", "pbx:21 names a PBX extension, but there is no PBX."),
], ids=["unknown phone", "pbx without a PBX"])
def test_a_route_to_something_the_client_does_not_have_is_refused(example_inventory: Path, tmp_path: Path,
                                                                  destination: str, reason: str) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(destinations=[destination]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message == "client example: wagw_routes[].destinations (windows included): " + reason


def test_a_route_that_is_neither_phone_nor_pbx_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(destinations=["PJSIP/empfang"]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(
        "client example: wagw_routes[].destinations (windows included): PJSIP/empfang is neither phone:<name>"
    ), message


def test_the_carrier_trunk_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    """An inventory written for the versions with a carrier trunk is refused, not half applied."""
    add(example_inventory, "carrier.yml", {"wagw_carrier": {
        "host": "127.0.0.1", "port": 5090, "transport": "udp", "auth": "ip", "caller_id": "+4930555000100",
        "source_networks": ["127.0.0.1/32"], "allowed_destinations": ["^\\+49"],
    }})
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(
        f"client example: wagw_carrier (a PSTN trunk) is not supported: {META_RULE}"
    ), message


def test_a_client_without_phones_or_pbx_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    (example_inventory / "group_vars" / "all" / "phones.yml").unlink()
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message == (
        "client example: declare wagw_phones (phones that register to the gateway) or wagw_pbx "
        "(the business IP-PBX), or both: WhatsApp calls ring them."
    )


@pytest.mark.parametrize(("names", "error"), [
    (["empfang", "Werkstatt"], "'Werkstatt' is not a valid name"),
    (["empfang", "werk-statt"], "'werk-statt' is not a valid name"),
    (["empfang", "werkstatt", "empfang"], "'empfang' is listed twice"),
], ids=["upper case", "hyphen", "duplicate"])
def test_an_invalid_phone_account_name_is_refused(example_inventory: Path, tmp_path: Path, names: list[str],
                                                  error: str) -> None:
    accounts = [{"name": name, "password": "long-enough-secret"} for name in names]
    edit(example_inventory, "phones.yml", lambda d: d["wagw_phones"].update(accounts=accounts))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(f"client example: wagw_phones.accounts: {error}"), message


def test_a_short_phone_password_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "phones.yml",
         lambda d: d["wagw_phones"].update(accounts=[{"name": "empfang", "password": "short"},
                                                     {"name": "werkstatt", "password": "long-enough-secret"}]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(
        "client example: wagw_phones needs at least one account, every password 12 characters or more"
    ), message


# The business's IP-PBX, with the operator's attestation that it forwards no WhatsApp call to
# the PSTN.
PBX: dict[str, Any] = {
    "product": "fritzbox",
    "mode": "register",
    "host": "192.168.178.1",
    "transport": "udp",
    "username": "620",
    "password": "pbx-secret-12345",
    "source_networks": ["192.168.178.1/32"],
    "no_pstn_forward_attestation": {
        "attested_by": "Max Mustermann, IT, Beispiel Sanitaer GmbH",
        "date": "2026-11-30",
        "statement": "The FRITZ!Box forwards no call of the IP phone WhatsApp to an outside line.",
    },
}


def test_a_pbx_with_its_attestation_and_a_pbx_route_pass(example_inventory: Path, tmp_path: Path) -> None:
    add(example_inventory, "pbx.yml", {"wagw_pbx": PBX})
    edit(example_inventory, "routing.yml",
         lambda d: d["wagw_routes"][0].update(destinations=["phone:empfang", "pbx:21"],
                                              windows=[{**WINDOW, "destinations": ["pbx:**21"]}]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout


def test_a_pbx_alone_serves_a_client(example_inventory: Path, tmp_path: Path) -> None:
    (example_inventory / "group_vars" / "all" / "phones.yml").unlink()
    add(example_inventory, "pbx.yml", {"wagw_pbx": PBX})
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(destinations=["pbx:21"]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_phone_route_without_phones_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    (example_inventory / "group_vars" / "all" / "phones.yml").unlink()
    add(example_inventory, "pbx.yml", {"wagw_pbx": PBX})
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(
        "client example: wagw_routes[].destinations (windows included): phone:empfang names no phone account []"
    ), message


def test_a_pbx_without_attestation_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    pbx = {k: v for k, v in PBX.items() if k != "no_pstn_forward_attestation"}
    add(example_inventory, "pbx.yml", {"wagw_pbx": pbx})
    message = refusal(run_validate(example_inventory, tmp_path))
    assert "missing required arguments: no_pstn_forward_attestation found in wagw_pbx" in message, message


PBX_MESSAGE = "client example: wagw_pbx: host must be a DNS name or an IP address; mode register"

# Each change to PBX that the PBX check refuses, and the part of its message that names the rule.
PBX_REFUSALS = {
    "register without password": ({"password": ""}, "mode register (and trunk with auth digest) needs username"),
    "register without username": ({"username": ""}, "mode register (and trunk with auth digest) needs username"),
    "digest trunk without password": ({"mode": "trunk", "auth": "digest", "password": ""}, "needs username and password"),
    "sdes over udp": ({"media_encryption": "sdes"}, "media_encryption sdes needs transport tls"),
    "no source networks": ({"source_networks": []}, "source_networks must list the PBX's addresses"),
    "source network no cidr": ({"source_networks": ["fritz.box"]}, "source_networks must list the PBX's addresses"),
    "host no DNS name": ({"host": "fritz box"}, "host must be a DNS name or an IP address"),
    "attestation date": (
        {"no_pstn_forward_attestation": {**PBX["no_pstn_forward_attestation"], "date": "30.11.2026"}},
        "no_pstn_forward_attestation needs attested_by, statement and a date YYYY-MM-DD",
    ),
    "attestation without statement": (
        {"no_pstn_forward_attestation": {**PBX["no_pstn_forward_attestation"], "statement": ""}},
        "no_pstn_forward_attestation needs attested_by, statement and a date YYYY-MM-DD",
    ),
}


@pytest.mark.parametrize(("change", "rule"), PBX_REFUSALS.values(), ids=PBX_REFUSALS.keys())
def test_pbx_settings_are_refused(example_inventory: Path, tmp_path: Path, change: dict, rule: str) -> None:
    add(example_inventory, "pbx.yml", {"wagw_pbx": {**PBX, **change}})
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(PBX_MESSAGE), message
    assert rule in message


def test_an_ip_trunk_without_password_passes(example_inventory: Path, tmp_path: Path) -> None:
    add(example_inventory, "pbx.yml", {"wagw_pbx": {**PBX, "mode": "trunk", "auth": "ip", "username": "",
                                                    "password": ""}})
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_whatsapp_codecs_without_opus_are_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "whatsapp.yml", lambda d: d["wagw_whatsapp"].update(audio_codecs=["pcma"]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(
        "client example: wagw_whatsapp.audio_codecs must contain opus (Meta always offers it; pcma/pcmu only "
        "add to it), got ['pcma']"
    ), message


def test_whatsapp_codecs_with_opus_and_pcma_pass(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "whatsapp.yml", lambda d: d["wagw_whatsapp"].update(audio_codecs=["pcma", "opus"]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("network", ["meta.example", "157.240.0.0/33", "300.1.2.0/24"])
def test_whatsapp_media_networks_that_are_no_cidrs_are_refused(example_inventory: Path, tmp_path: Path,
                                                              network: str) -> None:
    edit(example_inventory, "whatsapp.yml", lambda d: d["wagw_whatsapp"].update(media_networks=[network]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert "wagw_whatsapp.source_networks and media_networks must be addresses or CIDRs" in message, message


def set_media_address(inventory: Path, address: str) -> None:
    hosts = inventory / "hosts.yml"
    data = yaml.safe_load(hosts.read_text())
    data["all"]["hosts"]["demo-gateway"]["wagw_media_address"] = address
    hosts.write_text(yaml.safe_dump(data))


def test_a_media_address_that_is_no_ip_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    set_media_address(example_inventory, "not-an-ip")
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith("client example: wagw_media_address of demo-gateway must be an IP address"), message
    assert message.endswith("got not-an-ip."), message


@pytest.mark.parametrize("address", ["203.0.113.10", "2001:db8::10"])
def test_a_media_address_that_is_an_ip_passes(example_inventory: Path, tmp_path: Path, address: str) -> None:
    set_media_address(example_inventory, address)
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_business_hours_window_is_valid(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(windows=[WINDOW]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("change", "message"), [
    ({"destinations": ["+49900123456"]}, f"['+49900123456'] are phone numbers (the PSTN): {META_RULE}"),
    ({"destinations": ["phone:keller"]}, "phone:keller names no phone account"),
    ({"days": ["mon", "holiday"]}, "days must be some of mon..sun (got ['mon', 'holiday'])"),
    ({"start": 480}, "quote the times"),
    ({"end": "25:00"}, "got 08:00-25:00"),
], ids=["phone number", "unknown phone", "unknown day", "unquoted time", "hour 25"])
def test_bad_business_hours_window_is_refused(example_inventory: Path, tmp_path: Path, change: dict,
                                              message: str) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(windows=[{**WINDOW, **change}]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert message in refusal(result)


def test_business_hours_without_bridge_are_refused(example_inventory: Path, tmp_path: Path) -> None:
    hosts = example_inventory / "hosts.yml"
    data = yaml.safe_load(hosts.read_text())
    data["all"]["children"].pop("bridge")
    hosts.write_text(yaml.safe_dump(data))
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(windows=[WINDOW]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "windows need a webhook bridge" in result.stdout


def test_route_for_undeclared_number_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(whatsapp_number="+4930555000999"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "+4930555000999 is not one of wagw_whatsapp.numbers" in result.stdout


# Cross-key TLS rules: each change to the example's wagw_tls, and the message that refuses it.
TLS_REFUSALS = {
    "acme without its settings": ({"mode": "acme"}, "wagw_tls.mode acme needs wagw_tls.acme"),
    "dns-01 without route53": (
        {"mode": "acme", "acme": {"challenge": "dns-01", "email": "a@b.example"}},
        "wagw_tls.acme.route53 for dns-01",
    ),
    "provided without files": ({"mode": "provided"}, "wagw_tls.mode provided needs wagw_tls.provided"),
    "domain that is no DNS name": ({"domains": ["sip example"]}, "must be DNS names"),
}


@pytest.mark.parametrize(("change", "message"), TLS_REFUSALS.values(), ids=TLS_REFUSALS.keys())
def test_tls_settings_are_refused(example_inventory: Path, tmp_path: Path, change: dict, message: str) -> None:
    edit(example_inventory, "tls.yml", lambda d: d["wagw_tls"].update(change))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert message in result.stdout


def test_dns01_with_route53_passes(example_inventory: Path, tmp_path: Path) -> None:
    edit(
        example_inventory,
        "tls.yml",
        lambda d: d["wagw_tls"].update(
            mode="acme", acme={"challenge": "dns-01", "route53": {"zone": "beispiel-sanitaer.example"}}
        ),
    )
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("edges", [["demo-gateway", "edge2"], []], ids=["two", "none"])
def test_a_client_without_exactly_one_sip_edge_is_refused(example_inventory: Path, tmp_path: Path,
                                                         edges: list[str]) -> None:
    hosts = example_inventory / "hosts.yml"
    data = yaml.safe_load(hosts.read_text())
    data["all"]["children"]["gateway"]["children"]["sip_edge"]["hosts"] = dict.fromkeys(edges)
    if "edge2" in edges:
        data["all"]["hosts"]["edge2"] = {"ansible_connection": "local", "wagw_internal_address": "10.0.0.2"}
    hosts.write_text(yaml.safe_dump(data))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert f"the group sip_edge has {len(edges)} host(s)" in result.stdout


# One retention table (wagw_retention) for every host; each class up to its maximum. Consent
# proof: three years by default (§195 BGB), up to five where §7a UWG applies.
@pytest.mark.parametrize(("key", "days", "passes"), [
    ("consent_proof_days", 1826, True), ("consent_proof_days", 1827, False), ("consent_proof_days", 0, False),
    ("call_record_days", 180, True), ("call_record_days", 181, False),
    ("log_days", 14, True), ("log_days", 15, False), ("raw_payload_days", 31, False)])
def test_retention_up_to_the_maximum_of_each_class(example_inventory: Path, tmp_path: Path, key: str, days: int,
                                                   passes: bool) -> None:
    edit(example_inventory, "retention.yml", lambda d: d["wagw_retention"].update({key: days}))
    result = run_validate(example_inventory, tmp_path)
    if passes:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        message = refusal(result)
        assert message.startswith(f"client example: wagw_retention.{key} is {days} days; allowed 1 to "), message


@pytest.mark.parametrize(("days", "consent", "rule"), [
    (31, True, "allowed 0 (off) to 30 days"),
    (7, False, "recordings need wagw_client.recording_consent: true (§201 StGB"),
    (7, True, "this release records no calls; set 0")])
def test_recordings_are_refused_above_30_days_without_consent_and_in_this_release(
        example_inventory: Path, tmp_path: Path, days: int, consent: bool, rule: str) -> None:
    edit(example_inventory, "retention.yml", lambda d: d["wagw_retention"].update(recording_days=days))
    edit(example_inventory, "client.yml", lambda d: d["wagw_client"].update(recording_consent=consent))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith(f"client example: wagw_retention.recording_days is {days}; {rule}"), message


def test_retention_in_the_bridge_settings_points_to_the_one_table(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "bridge.yml", lambda d: d["wagw_bridge"].update(retention={"call_record_days": 30}))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert "wagw_bridge.retention moved to wagw_retention" in message, message


def test_the_opt_in_wording_comes_from_the_inventory(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "bridge.yml", lambda d: d["wagw_bridge"].pop("consent"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "consent" in result.stdout


# The rules of the numbers and routes that the schema cannot state (plugins/filter/wagw.py,
# wagw_client_errors): each message names the key with its element index and the rule.
def _second_number(d: dict[str, Any]) -> None:
    d["wagw_whatsapp"]["numbers"].append(dict(d["wagw_whatsapp"]["numbers"][0], phone_number_id="100000000000009"))


def _second_route(d: dict[str, Any]) -> None:
    d["wagw_routes"].append(dict(d["wagw_routes"][0]))


NUMBER_AND_ROUTE_CASES: dict[str, tuple[str, Any, str]] = {
    "number listed twice": ("whatsapp.yml", _second_number,
                            "wagw_whatsapp.numbers[1].number: +4930555000100 is listed twice, first at "
                            "wagw_whatsapp.numbers[0].number"),
    "phone number id listed twice": (
        "whatsapp.yml",
        lambda d: d["wagw_whatsapp"]["numbers"].append(dict(d["wagw_whatsapp"]["numbers"][0], number="+4930555000199")),
        "wagw_whatsapp.numbers[1].phone_number_id: 100000000000001 is listed twice, first at "
        "wagw_whatsapp.numbers[0].phone_number_id"),
    "unquoted number": ("whatsapp.yml", lambda d: d["wagw_whatsapp"]["numbers"][0].update(number=4930555000100),
                        'wagw_whatsapp.numbers[0].number: 4930555000100 was read as a number, not text (YAML drops '
                        'the + of an unquoted +4930555000100): write it in quotes, "+4930555000100"'),
    "number not e164": ("whatsapp.yml", lambda d: d["wagw_whatsapp"]["numbers"][0].update(number="030555000100"),
                        "wagw_whatsapp.numbers[0].number: '030555000100' is not E.164"),
    "empty sip password": ("whatsapp.yml", lambda d: d["wagw_whatsapp"]["numbers"][0].update(sip_password=""),
                           "wagw_whatsapp.numbers[0].sip_password is empty"),
    "empty sip domain": ("whatsapp.yml", lambda d: d["wagw_whatsapp"].update(sip_domain=""),
                         "wagw_whatsapp.sip_domain: '' is not a DNS name"),
    "sip domain with a scheme": ("whatsapp.yml", lambda d: d["wagw_whatsapp"].update(sip_domain="sip:gw.example"),
                                 "wagw_whatsapp.sip_domain: 'sip:gw.example' is not a DNS name"),
    "number in two routes": ("routing.yml", _second_route,
                             "wagw_routes[1].whatsapp_number: +4930555000100 has a second route; one route per "
                             "business number, the first is wagw_routes[0].whatsapp_number"),
    "empty destinations": ("routing.yml", lambda d: d["wagw_routes"][0].update(destinations=[]),
                           "wagw_routes[0].destinations is empty"),
    "negative ring timeout": ("routing.yml", lambda d: d["wagw_routes"][0].update(ring_timeout=-5),
                              "wagw_routes[0].ring_timeout: -5 is not 1 to 300 seconds"),
    "endless ring timeout": ("routing.yml", lambda d: d["wagw_routes"][0].update(ring_timeout=3600),
                             "wagw_routes[0].ring_timeout: 3600 is not 1 to 300 seconds"),
    "peak beyond what a media node sizes": ("client.yml", lambda d: d.update(wagw_capacity={"concurrent_calls": 5000}),
                                            "wagw_capacity.concurrent_calls: 5000 is not 1 to 2000"),
    "call rate beyond what the edge sizes": ("client.yml", lambda d: d.update(wagw_capacity={"calls_per_second": 0}),
                                             "wagw_capacity.calls_per_second: 0 is not 1 to 200"),
}


@pytest.mark.parametrize("case", NUMBER_AND_ROUTE_CASES)
def test_numbers_and_routes_rules(example_inventory: Path, tmp_path: Path, case: str) -> None:
    name, change, expected = NUMBER_AND_ROUTE_CASES[case]
    edit(example_inventory, name, change)
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith("client example: "), message
    assert expected in message, message


def test_every_broken_rule_is_reported_at_once(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(ring_timeout=0, destinations=[]))
    edit(example_inventory, "whatsapp.yml", lambda d: d["wagw_whatsapp"].update(sip_domain="x"))
    message = refusal(run_validate(example_inventory, tmp_path))
    for part in ("wagw_whatsapp.sip_domain", "wagw_routes[0].destinations", "wagw_routes[0].ring_timeout"):
        assert part in message, message


def test_a_schema_error_is_one_short_message_without_the_spec(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "client.yml", lambda d: d["wagw_client"].pop("imprint_url"))
    result = run_validate(example_inventory, tmp_path)
    message = refusal(result)
    assert message == ("client example: missing required arguments: imprint_url found in wagw_client "
                       "(playbooks/schema/client.yml, docs/inventory.md)."), message
    assert "argument_spec_data" not in result.stdout
    assert len(result.stdout.splitlines()) < 60, len(result.stdout.splitlines())


def test_a_scaffolded_client_is_refused_until_filled_in(tmp_path: Path) -> None:
    """The scaffold's placeholders are no lab defaults: the check names what is missing."""
    clients, vaults = tmp_path / "clients", tmp_path / "vaults"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "ansible-playbook"), str(ROOT / "playbooks/new_client.yml"), "-e", "client_id=praxis-d",
                    "-e", f"clients_dir={clients}", "-e", f"vault_dir={vaults}"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    result = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(clients / "praxis-d/hosts.yml"),
                             "--vault-id", f"praxis-d@{vaults / 'praxis-d'}", str(ROOT / "playbooks/validate.yml")],
                            env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert "client praxis-d: missing required arguments: dpo_contact, imprint_url found in wagw_client" in refusal(result)


# Secrets of a production client (any TLS mode but the lab's selfsigned): from the vault or a
# lookup, never written in clear. The schema's no_log marks say which keys are secrets.
CLEAR = "ClearTextPassword42"  # the clear secret the check must find


def _set_werkstatt_password(inventory: Path, value: str) -> None:
    edit(inventory, "phones.yml", lambda d: d["wagw_phones"]["accounts"][1].__setitem__("password", value))


def _production(inventory: Path) -> None:
    edit(inventory, "tls.yml", lambda d: d["wagw_tls"].update(mode="acme", acme={"email": "it@example.org"}))


def test_a_production_client_with_a_clear_secret_is_refused_with_key_file_and_line(
        example_inventory: Path, tmp_path: Path) -> None:
    _production(example_inventory)
    _set_werkstatt_password(example_inventory, CLEAR)
    bridge = example_inventory / "group_vars" / "all" / "bridge.yml"
    bridge.write_text(re.sub(r"  pseudonym_key: .*", "  pseudonym_key: >-\n    ClearPseudonymKey123456", bridge.read_text()))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert "secret(s) written in clear text" in message, message
    assert re.search(r"wagw_phones.accounts\[1\].password \(\S+/phones.yml line \d+\)", message), message
    assert re.search(r"wagw_bridge.pseudonym_key \(\S+/bridge.yml line 22\)", message), message
    assert CLEAR not in message
    assert "ClearPseudonymKey" not in message
    assert "wagw_phones.accounts[0]" not in message  # still a lookup


def test_a_production_client_with_vaulted_secrets_passes(example_inventory: Path, tmp_path: Path) -> None:
    _production(example_inventory)
    # One secret from a vault-encrypted file (by reference), one inline !vault value.
    vault_file = example_inventory / "group_vars" / "all" / "vault.yml"
    vault_file.write_text(yaml.safe_dump({"vault_phone_werkstatt": "VaultedPassword42"}))
    vault(tmp_path, "encrypt", str(vault_file))
    _set_werkstatt_password(example_inventory, "{{ vault_phone_werkstatt }}")
    inline = vault(tmp_path, "encrypt_string", "InlineVaultedKey123456", "--name", "  pseudonym_key")
    bridge = example_inventory / "group_vars" / "all" / "bridge.yml"
    bridge.write_text(re.sub(r"  pseudonym_key: .*\n", lambda _: inline, bridge.read_text()))
    result = run_validate(example_inventory, tmp_path, *vault_args(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_lab_client_may_keep_secrets_in_clear(example_inventory: Path, tmp_path: Path) -> None:
    _set_werkstatt_password(example_inventory, CLEAR)
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# GDPR Art. 30: the controller's record, each defect named with its key and the rule.
RECORD_CASES: dict[str, tuple[Any, str]] = {
    "imprint not a URL": (lambda c: c.update(imprint_url="tbd"),
                          "wagw_client.imprint_url: 'tbd' is not an https:// URL"),
    "dpo placeholder": (lambda c: c.update(dpo_contact="tbd"),
                        "wagw_client.dpo_contact: 'tbd' is neither an e-mail address nor an https:// URL"),
    "no purpose": (lambda c: c.update(purposes=[]), "wagw_client.purposes is empty"),
    "unquoted or empty dpa date": (lambda c: c["processors"][0].update(dpa_date=""),
                                   "wagw_client.processors[0].dpa_date: '' is not a date YYYY-MM-DD"),
    "country name": (lambda c: c["processors"][1].update(country="Germany"),
                     "wagw_client.processors[1].country: 'Germany' is not an ISO 3166 country code"),
    "US processor without mechanism": (
        lambda c: c["processors"].append(dict(c["processors"][1], name="Cloud Inc.", country="US")),
        "wagw_client.processors[2].transfer_mechanism: 'eea' does not fit country US"),
    "BSP in the EEA with scc": (
        lambda c: c.update(bsp={"name": "BSP GmbH", "purpose": "WhatsApp onboarding", "country": "DE",
                                "dpa_date": "2026-02-01", "transfer_mechanism": "scc"}),
        "wagw_client.bsp.transfer_mechanism: 'scc' does not fit country DE"),
}


@pytest.mark.parametrize("case", RECORD_CASES)
def test_the_controllers_record_is_complete(example_inventory: Path, tmp_path: Path, case: str) -> None:
    change, expected = RECORD_CASES[case]
    edit(example_inventory, "client.yml", lambda d: change(d["wagw_client"]))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith("client example: "), message
    assert expected in message, message


def test_a_legal_basis_outside_article_6_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "client.yml", lambda d: d["wagw_client"]["purposes"][0].update(legal_basis="because"))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert "legal_basis" in message, message
    assert "art-6-1-a-consent" in message, message


BACKUP = {"bucket": "example-wagw-backups", "recipients": ["age1ddxugcwdexhx47t9r7p2ftcdmxmx4302yhuffua5p8g5cym92d4sze05az"],
          "access_key_id": "lab-key", "secret_access_key": "lab-secret"}


@pytest.mark.parametrize(("backup", "retention", "rule"), [
    ({}, {"backup_days": 1200}, "wagw_retention.backup_days is 1200 days; allowed 1 to 1095 "
                                "(wagw_retention.consent_proof_days, the longest class a backup of the bridge holds)"),
    ({"recipients": ["AGE-SECRET-KEY-1QQQ"]}, {}, 'recipients ["AGE-SECRE..."]'),
    ({"bucket": "Example_Backups"}, {}, 'Got bucket "Example_Backups"'),
    ({"prefix": "/bridge"}, {}, 'prefix "/bridge"'),
], ids=["longer-than-the-consent-proof", "a-secret-key-as-recipient", "bucket-name", "prefix"])
def test_bad_backup_settings_are_refused(example_inventory: Path, tmp_path: Path, backup: dict, retention: dict,
                                         rule: str) -> None:
    add(example_inventory, "backup.yml", {"wagw_backup": {**BACKUP, **backup}})
    if retention:
        edit(example_inventory, "retention.yml", lambda d: d["wagw_retention"].update(retention))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith("client example: "), message
    assert rule in message, message
    # the storage secret is never part of a message
    assert "lab-secret" not in message


def test_backup_settings_pass_and_take_the_schema_defaults(example_inventory: Path, tmp_path: Path) -> None:
    assert resolved(example_inventory / "hosts.yml", "demo-gateway", "webhook_bridge_backup_bucket") == {
        "webhook_bridge_backup_bucket": ""}
    add(example_inventory, "backup.yml", {"wagw_backup": BACKUP})
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    names = ("webhook_bridge_backup_bucket", "webhook_bridge_backup_prefix", "webhook_bridge_backup_region",
             "webhook_bridge_backup_on_calendar", "webhook_bridge_backup_retention_days",
             "webhook_bridge_backup_manage_bucket")
    assert resolved(example_inventory / "hosts.yml", "demo-gateway", *names) == dict(zip(names, [
        "example-wagw-backups", "bridge/", "eu-central-1", "*-*-* 02:30:00", 30, True], strict=True))


@pytest.mark.parametrize(("monitoring", "expected"), [
    ({"networks": ["0.0.0.0/0"]}, "never the whole Internet (got ['0.0.0.0/0'])"),
    ({"networks": ["prometheus.example"]}, "wagw_monitoring.networks must be the Prometheus servers' addresses"),
    ({"networks": ["192.0.2.9/32"], "kamailio_port": 80}, "1024 to 65535, each a different one (got 80, 9152, 9153, 9256, 9100)"),
    ({"networks": ["192.0.2.9/32"], "bridge_port": 9152}, "each a different one (got 9151, 9152, 9152, 9256, 9100)"),
])
def test_metrics_only_for_named_monitoring_networks(example_inventory: Path, tmp_path: Path, monitoring: dict,
                                                    expected: str) -> None:
    edit(example_inventory, "client.yml", lambda d: d.update(wagw_monitoring=monitoring))
    message = refusal(run_validate(example_inventory, tmp_path))
    assert message.startswith("client example: "), message
    assert expected in message, message
