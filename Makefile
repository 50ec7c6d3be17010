# wa-voip-gateway: the two commands of the README are `make demo` and `make test`.
# Every target installs what it needs (Debian packages, venv, test image) on its own.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
DEMO_CONTAINER := wagw-demo

.PHONY: setup image demo demo-destroy test lint unit bridge-test molecule bench clean

setup: ## Debian packages, podman configuration and the pinned Python venv
	@scripts/setup-host.sh

image: setup ## the systemd test image (Debian forky), cached by recipe hash
	@scripts/build-test-image.sh

demo: image ## provision the all-in-one demo gateway into a local systemd container
	@scripts/container.sh start $(DEMO_CONTAINER)
	@scripts/trust-local-cas.sh $(DEMO_CONTAINER)
	$(BIN)/ansible-playbook -i inventories/example/hosts.yml playbooks/site.yml
	@scripts/demo-summary.sh $(DEMO_CONTAINER)

demo-destroy: ## remove the demo container
	@scripts/container.sh rm $(DEMO_CONTAINER)

test: lint unit bridge-test molecule ## every test: linters, unit tests, the bridge's tests, then Molecule

lint: setup
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	@# ruff from the bridge's venv (made by setup); ruff.toml covers plugins/, tests/, molecule/
	bridge/.venv/bin/ruff check .
	@echo "lint: yamllint, ansible-lint (production profile) and ruff passed"

unit: setup ## pytest: filters and the client-inventory schema
	$(BIN)/pytest

bridge-test: setup ## the webhook bridge: ruff, mypy, pytest (SQLite and a real PostgreSQL, backups on moto's S3), schemathesis
	cd bridge && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
	cd bridge && WAGW_REQUIRE_POSTGRES=1 WAGW_REQUIRE_S3=1 .venv/bin/pytest
	@echo "bridge-test: ruff, mypy and pytest passed"

# One Molecule scenario after the other (2 cores): default = the all-in-one gateway with real
# calls and the webhook bridge; split = the same client on an edge host, two media nodes and a
# bridge host; tls = ACME against Pebble, renewal, dns-01 on moto, testssl.
# scenario:container[,container...]; each container gets its own cgroup volume, passed as
# WAGW_CGROUP_VOLUME_<NAME> (and the first also as WAGW_CGROUP_VOLUME).
MOLECULE_SCENARIOS := default:wagw-molecule-aio split:wagw-split-edge,wagw-split-media-a,wagw-split-media-b,wagw-split-bridge tls:wagw-molecule-tls
molecule: image
	podman network exists wagw-split || podman network create --subnet 10.89.77.0/24 wagw-split >/dev/null
	rc=0; for pair in $(MOLECULE_SCENARIOS); do \
	  scenario=$${pair%%:*} containers=$${pair#*:}; \
	  unset WAGW_CGROUP_VOLUME; \
	  for c in $${containers//,/ }; do \
	    scripts/container.sh rm $$c; \
	    volume=$$(scripts/container.sh cgroup-volume $$c); \
	    export WAGW_CGROUP_VOLUME_$$(echo $$c | tr a-z- A-Z_)=$$volume; \
	    export WAGW_CGROUP_VOLUME=$${WAGW_CGROUP_VOLUME:-$$volume}; \
	  done; \
	  $(BIN)/molecule test -s $$scenario || rc=$$?; \
	  for c in $${containers//,/ }; do scripts/container.sh rm $$c; done; \
	done; exit $$rc

bench: image ## converge timing against a plain apt-get install; webhook load against a bare endpoint; 100 clients' pre-flight and report
	benchmarks/converge.sh
	benchmarks/webhook.sh
	benchmarks/clients.sh

clean: demo-destroy
	@for pair in $(MOLECULE_SCENARIOS); do containers=$${pair#*:}; for c in $${containers//,/ }; do scripts/container.sh rm $$c; done; done
