"""playbooks/validate.yml: a bad client inventory stops the play with a message that names
the client, the key and the rule; the example inventory passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import run_validate


def edit(inventory: Path, name: str, change) -> None:
    path = inventory / "group_vars" / "all" / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_example_inventory_is_valid(example_inventory: Path, tmp_path: Path) -> None:
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout


def test_unknown_carrier_transport_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "carrier.yml", lambda d: d["wagw_carrier"].update(transport="pigeon"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "transport" in result.stdout
    assert "pigeon" in result.stdout


def test_missing_sip_domain_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "whatsapp.yml", lambda d: d["wagw_whatsapp"].pop("sip_domain"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "sip_domain" in result.stdout


def test_non_e164_destination_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(destinations=["030123456"]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "client example: wagw_routes[].destinations" in result.stdout
    assert "030123456" in result.stdout


def test_premium_rate_destination_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(destinations=["+49900123456"]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "+49900123456" in result.stdout
    assert "allowed_destinations" in result.stdout


WINDOW = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00",
          "destinations": ["+4930123457"]}


def test_business_hours_window_is_valid(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(windows=[WINDOW]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("change", "message"), [
    ({"destinations": ["+49900123456"]}, "+49900123456"),
    ({"days": ["mon", "holiday"]}, "days must be some of mon..sun (got ['mon', 'holiday'])"),
    ({"start": 480}, "quote the times"),
    ({"end": "25:00"}, "got 08:00-25:00"),
], ids=["premium-rate destination", "unknown day", "unquoted time", "hour 25"])
def test_bad_business_hours_window_is_refused(example_inventory: Path, tmp_path: Path, change: dict,
                                              message: str) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(windows=[{**WINDOW, **change}]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert message in result.stdout


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
