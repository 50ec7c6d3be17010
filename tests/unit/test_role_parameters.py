"""The roles' parameters are derived from the client inventory (playbooks/role_parameters/,
loaded by plugins/vars/wagw_role_parameters.py) and rank below every inventory value: a role
parameter set anywhere in a client inventory replaces the derived one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import conftest

HOST = "demo-gateway"


def resolved(inventory: Path, *names: str) -> dict[str, object]:
    """The values a task on the demo host sees for these variables (templated)."""
    return conftest.resolved(inventory / "hosts.yml", HOST, *names)


def write_yaml(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def test_parameters_are_derived_from_the_client_settings(example_inventory: Path) -> None:
    whatsapp = yaml.safe_load((example_inventory / "group_vars/all/whatsapp.yml").read_text())
    whatsapp["wagw_whatsapp"]["sip_domain"] = "sip.derived.example"
    write_yaml(example_inventory / "group_vars/all/whatsapp.yml", whatsapp)
    bridge = yaml.safe_load((example_inventory / "group_vars/all/bridge.yml").read_text())
    bridge["wagw_bridge"]["internal_port"] = 8099
    write_yaml(example_inventory / "group_vars/all/bridge.yml", bridge)
    # (the demo's address is a fact of the container)
    write_yaml(example_inventory / "host_vars" / HOST / "address.yml", {"wagw_internal_address": "192.0.2.5"})
    values = resolved(example_inventory, "kamailio_sip_domain", "asterisk_bridge_url", "webhook_bridge_internal_listen")
    assert values["kamailio_sip_domain"] == "sip.derived.example"
    assert values["asterisk_bridge_url"] == "http://192.0.2.5:8099"
    assert values["webhook_bridge_internal_listen"] == "192.0.2.5:8099"


@pytest.mark.parametrize("place", ["group_vars/all", "group_vars/sip_edge", "host_vars", "inventory file"])
def test_an_inventory_value_replaces_the_derived_one(example_inventory: Path, place: str) -> None:
    overrides = {"kamailio_sip_domain": f"sip.{place.replace('/', '-').replace(' ', '-')}.example",
                 "asterisk_bridge_url": "http://192.0.2.10:9000"}
    if place == "host_vars":
        write_yaml(example_inventory / "host_vars" / HOST / "override.yml", overrides)
    elif place == "inventory file":
        hosts = yaml.safe_load((example_inventory / "hosts.yml").read_text())
        hosts["all"]["vars"] = overrides
        write_yaml(example_inventory / "hosts.yml", hosts)
    else:
        write_yaml(example_inventory / place / "override.yml", overrides)
    assert resolved(example_inventory, *overrides) == overrides


@pytest.mark.parametrize(("calls", "open_files", "rtp_ports"), [(None, 8192, 1000), (100, 8192, 1000),
                                                                 (400, 11424, 3200), (2000, 53024, 16000)])
def test_the_media_nodes_are_sized_for_the_clients_peak(example_inventory: Path, calls: int | None,
                                                        open_files: int, rtp_ports: int) -> None:
    # 13 descriptors and 4 RTP/RTCP ports per call, twice that as margin; never below the defaults.
    settings: dict[str, object] = {"asterisk_rtp_port_start": 20000}  # the role default's stand-in
    if calls is not None:
        settings["wagw_capacity"] = {"concurrent_calls": calls}
    write_yaml(example_inventory / "group_vars/all/capacity.yml", settings)
    values = resolved(example_inventory, "asterisk_open_files_limit", "asterisk_rtp_port_end", "asterisk_peak_calls")
    assert int(values["asterisk_open_files_limit"]) == open_files
    # the peak the role's CPU check holds the node to; the schema's default when unstated
    assert int(values["asterisk_peak_calls"]) == (calls or 50)
    assert int(values["asterisk_rtp_port_end"]) == 20000 + rtp_ports - 1


@pytest.mark.parametrize(("capacity", "max_calls", "shm", "rate_limit"), [
    # (10 cps x 180 s + 50 calls x 2) x 18 KB = 33.4 MB, + 32 MB
    (None, 50, 66, 20),
    ({"concurrent_calls": 400, "calls_per_second": 40}, 400, 173, 80),
    # never below Debian's 64 MB
    ({"concurrent_calls": 1, "calls_per_second": 1}, 1, 64, 2),
])
def test_the_edge_is_sized_for_the_clients_peak(example_inventory: Path, capacity: dict | None, max_calls: int,
                                                shm: int, rate_limit: int) -> None:
    settings: dict[str, object] = {"kamailio_topos_branch_expire": 180}  # the role default's stand-in
    if capacity is not None:
        settings["wagw_capacity"] = capacity
    write_yaml(example_inventory / "group_vars/all/capacity.yml", settings)
    values = resolved(example_inventory, "kamailio_max_calls", "kamailio_shm_memory", "kamailio_call_rate_limit")
    assert int(values["kamailio_max_calls"]) == max_calls
    assert int(values["kamailio_shm_memory"]) == shm
    # one source may bring the whole peak rate, in bursts of twice it
    assert int(values["kamailio_call_rate_limit"]) == rate_limit


def test_a_key_the_client_leaves_out_takes_the_schemas_default(example_inventory: Path) -> None:
    # Written once, in playbooks/schema/client.yml; plugins/vars/wagw_layers.py fills them in.
    bridge = yaml.safe_load((example_inventory / "group_vars/all/bridge.yml").read_text())
    for key in ("internal_port", "timezone", "permission_check"):
        bridge["wagw_bridge"].pop(key, None)
    write_yaml(example_inventory / "group_vars/all/bridge.yml", bridge)
    whatsapp = yaml.safe_load((example_inventory / "group_vars/all/whatsapp.yml").read_text())
    whatsapp["wagw_whatsapp"].pop("audio_codecs", None)
    write_yaml(example_inventory / "group_vars/all/whatsapp.yml", whatsapp)
    (example_inventory / "group_vars/all/retention.yml").unlink()
    write_yaml(example_inventory / "host_vars" / HOST / "address.yml", {"wagw_internal_address": "192.0.2.5"})
    values = resolved(example_inventory, "webhook_bridge_internal_listen", "webhook_bridge_timezone",
                      "webhook_bridge_permission_check", "asterisk_whatsapp_codecs", "asterisk_cdr_retention_days")
    assert values == {"webhook_bridge_internal_listen": "192.0.2.5:8081", "webhook_bridge_timezone": "Europe/Berlin",
                      "webhook_bridge_permission_check": "off", "asterisk_whatsapp_codecs": ["opus"],
                      "asterisk_cdr_retention_days": 90}


@pytest.mark.parametrize("networks", [[], ["192.0.2.64/28"]])
def test_every_service_serves_metrics_to_the_monitoring_networks_only(example_inventory: Path,
                                                                       networks: list[str]) -> None:
    write_yaml(example_inventory / "group_vars/all/monitoring.yml",
               {"wagw_monitoring": {"networks": networks, "asterisk_port": 9262}})
    write_yaml(example_inventory / "host_vars" / HOST / "address.yml", {"wagw_internal_address": "192.0.2.5"})
    names = ("kamailio_metrics_port", "asterisk_metrics_port", "webhook_bridge_metrics_listen",
             "common_process_exporter_port", "common_node_exporter_port", "asterisk_metrics_address",
             "common_process_exporter_address", "common_node_exporter_address", "common_process_exporter_groups",
             "tls_expiry_metrics_file", "common_node_exporter_textfile_dir", "kamailio_metrics_sources", "asterisk_metrics_sources", "webhook_bridge_metrics_sources",
             "common_process_exporter_sources", "common_node_exporter_sources")
    values = resolved(example_inventory, *names)
    # each service's port (the firewall opens it to these sources: the roles' *_firewall_ports)
    assert [values[name] for name in names[-5:]] == [networks] * 5
    if not networks:  # no monitoring network: no metrics port anywhere
        assert [values[name] for name in names[:5]] == [0, 0, "", 0, 0]
        assert values["tls_expiry_metrics_file"] == ""
        return
    assert [values[name] for name in names[:5]] == [9151, 9262, "192.0.2.5:9153", 9256, 9100]
    assert {values[name] for name in names[5:8]} == {"192.0.2.5"}
    # the certificate's expiry goes where the node exporter's textfile collector reads
    assert values["tls_expiry_metrics_file"] == values["common_node_exporter_textfile_dir"] + "/wagw-tls.prom"
    # the all-in-one demo host runs every service
    assert values["common_process_exporter_groups"] == ["kamailio", "asterisk", "wagw-bridge", "nginx"]
