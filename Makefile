# Entry points. Set-up on a fresh machine: `make demo` (lab + deploy) or `make test`.
VENV ?= .venv
PY = $(VENV)/bin/python
PYINFRA = $(VENV)/bin/pyinfra
INVENTORY ?= inventories/lab.py
OUT ?= out
NODES ?= 3
# Debian packages the host needs: the real haproxy and keepalived binaries check rendered
# configs; the rest builds and runs the lab (nftables: the split-brain drill's packet filter,
# run inside one node's network namespace; openssl: the lab's CA and the VIP's certificate).
HOST_PACKAGES = haproxy keepalived socat iproute2 debootstrap systemd-container apt-cacher-ng \
	mariadb-client curl nftables openssl prometheus prometheus-alertmanager
# Installed for promtool and amtool (the unit tier checks the alert rules and the monitoring
# configs with them); their daemons must not run on the host: stopped and disabled.
HOST_SERVICES_OFF = prometheus prometheus-alertmanager prometheus-node-exporter

.PHONY: setup host-packages venv demo deploy verify render preflight test test-unit test-lab test-long \
	maintenance-out maintenance-back backup restore restore-rehearsal lab-up lab-down keystone keystone-release \
	bench-deploy bench-failover bench-durability bench-backup bench-upgrade soak mutate clean

setup: host-packages venv

host-packages: .stamp-host-packages
.stamp-host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing host packages: $$missing"; \
		timeout 600 apt-get update -q && DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -q $$missing; \
	fi
	@for s in $(HOST_SERVICES_OFF); do \
		if [ -d /run/systemd/system ]; then systemctl disable --now $$s >/dev/null 2>&1 || true; \
		elif [ -x /etc/init.d/$$s ]; then /etc/init.d/$$s stop >/dev/null 2>&1 || true; fi; \
	done
	@touch $@

# The project's modules compiled ahead (pyinfra's CLI never writes bytecode: each run compiled
# them again, ~0.1 s of a no-op's CPU); quick when nothing changed, and a stale file is only
# compiled again in memory (Python checks each source's mtime and size).
venv: $(VENV)/.installed
	@$(PY) -m compileall -q config facts health operations lab inventories >/dev/null
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

# --- the demo: lab up, deploy, verification report ---
demo: setup lab-up deploy

# Preflight first: a wrong inventory is refused before pyinfra connects to any host.
deploy: venv
	$(PY) -m config.preflight $(INVENTORY)
	$(PYINFRA) -y $(INVENTORY) deploy.py

verify: venv
	$(PYINFRA) -y $(INVENTORY) verify.py

# Maintenance of one controller (docs/operations.md "Maintenance"): make maintenance-out NODE=node02
maintenance-out maintenance-back: venv
	@test -n "$(NODE)" || { echo "name the controller: make $@ NODE=<controller> INVENTORY=$(INVENTORY)" >&2; exit 2; }
	$(PY) -m config.preflight $(INVENTORY)
	$(PYINFRA) -y $(INVENTORY) maintenance.py --data node=$(NODE) --data action=$(@:maintenance-%=%)

# One MariaDB backup now on the backup node (docs/operations.md "Backups"): make backup [KIND=incremental]
KIND ?= full
backup: venv
	$(PY) -m config.preflight $(INVENTORY)
	$(PYINFRA) -y $(INVENTORY) backup.py --data kind=$(KIND)

# Disaster restore (docs/operations.md "Backups"): mariadb stopped on every controller first;
# the datadirs are set aside, never deleted. make restore BACKUP=<id>|latest CONFIRM=<id>
restore: venv
	@test -n "$(BACKUP)" || { echo "name the backup: make restore BACKUP=<id>|latest CONFIRM=<id> INVENTORY=$(INVENTORY)" >&2; exit 2; }
	$(PY) -m config.preflight $(INVENTORY)
	$(PYINFRA) -y $(INVENTORY) restore.py --data backup=$(BACKUP) $(if $(CONFIRM),--data confirm=$(CONFIRM))

# Restore rehearsal (docs/operations.md "Backups"): a backup restored as a cluster of its own on
# backup_rehearsal_hosts (never a controller; on the lab node08 and node09: python -m lab add
# node08 node09), compared with its manifest; the controllers are only read. The verdict is
# printed last. make restore-rehearsal [BACKUP=<id>|latest] [FROM=node|copy]
restore-rehearsal: venv
	$(PY) -m config.preflight $(INVENTORY)
	@rm -f $(OUT)/restore-rehearsal.txt
	HA_REHEARSAL_SITE=$(INVENTORY) $(PYINFRA) -y inventories/rehearsal.py rehearsal.py --data backup=$(or $(BACKUP),latest) \
		--data report=$(OUT)/restore-rehearsal.txt $(if $(FROM),--data from=$(FROM)); \
	rc=$$?; cat $(OUT)/restore-rehearsal.txt 2>/dev/null; exit $$rc

# --- offline: never connects to any host ---
render: venv
	$(PY) -m config.render $(INVENTORY) $(OUT)

preflight: venv
	$(PY) -m config.preflight $(INVENTORY)

# --- tests ---
# The duration is printed at the end, also when a test failed (the exit status is kept).
test: setup
	@start=$$(date +%s); $(PY) -m pytest -q --durations=40 -m "not long" tests/unit tests/lab; rc=$$?; \
	s=$$(( $$(date +%s) - start )); \
	echo "make test: $$(( s / 60 )) min $$(( s % 60 )) s (pytest exit $$rc)"; exit $$rc

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-lab: setup
	$(PY) -m pytest -q -m "not long" tests/lab

# The lab drills marked `long` (tests/lab: the alert drills, AMQP and peer TLS on and off, the standby
# and both-ways holder partitions, concurrent increments across a failover, the whole site stopped
# cleanly, a member paused below the suspect timeout; ~60 min):
# outside make test's 60-minute budget, run before a release and after a change to the alert rules.
test-long: setup
	$(PY) -m pytest -q -m long tests/lab

# Mutation of the decision modules (tests/mutate.py: TARGETS): every mutant a table lets
# pass is a row missing. Offline, a few minutes: not part of `make test`.
mutate: venv
	nice -n 19 $(PY) -m tests.mutate $(MODULES)

# --- the lab ---
lab-up: setup
	$(PY) -m lab up --nodes $(NODES)

lab-down: venv
	$(PY) -m lab down

# Debian's keystone behind the VIP's keystone listener on every lab node (lab/keystone.py, issue
# 21): the lab must be up and deployed (make lab-up deploy). Installs (idempotent), then a token
# and a project created and deleted through the VIP. keystone-release gives its port back to the
# API stand-ins (the other lab tests expect theirs on every API port).
keystone: setup
	$(PY) -m lab.keystone install

keystone-release: venv
	$(PY) -m lab.keystone release

bench-deploy: setup
	$(PY) -m tests.bench.deploy

bench-failover: setup
	$(PY) -m tests.bench.failover

bench-durability: setup
	$(PY) -m tests.bench.durability

bench-backup: setup
	$(PY) -m tests.bench.backup

bench-upgrade: setup
	$(PY) -m tests.bench.upgrade

# The fault soak on the deployed lab (tests/soak/run.py): make soak [SOAK_MIN=30] [SEED=n]
soak: setup
	$(PY) -m tests.soak run --minutes $(or $(SOAK_MIN),30) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(OUT) .pytest_cache soak-out
