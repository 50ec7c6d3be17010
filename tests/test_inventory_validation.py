"""playbooks/validate.yml: a bad client inventory stops the play with a message that names
the client, the key and the rule; the example inventory passes."""

from __future__ import annotations

from pathlib import Path

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
    assert "transport" in result.stdout and "pigeon" in result.stdout


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
    assert "+49900123456" in result.stdout and "allowed_destinations" in result.stdout


def test_route_for_undeclared_number_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "routing.yml", lambda d: d["wagw_routes"][0].update(whatsapp_number="+4930555000999"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "+4930555000999 is not one of wagw_whatsapp.numbers" in result.stdout


def test_acme_without_its_settings_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "tls.yml", lambda d: d["wagw_tls"].update(mode="acme"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "wagw_tls.mode acme needs wagw_tls.acme" in result.stdout


def test_dns01_without_route53_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(
        example_inventory,
        "tls.yml",
        lambda d: d["wagw_tls"].update(mode="acme", acme={"challenge": "dns-01", "email": "a@b.example"}),
    )
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "wagw_tls.acme.route53 for dns-01" in result.stdout


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


def test_provided_without_files_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "tls.yml", lambda d: d["wagw_tls"].update(mode="provided"))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "wagw_tls.mode provided needs wagw_tls.provided" in result.stdout


def test_tls_domain_that_is_no_dns_name_is_refused(example_inventory: Path, tmp_path: Path) -> None:
    edit(example_inventory, "tls.yml", lambda d: d["wagw_tls"].update(domains=["sip example"]))
    result = run_validate(example_inventory, tmp_path)
    assert result.returncode != 0
    assert "must be DNS names" in result.stdout
