# pm-engine — see README.md. Every target installs what it needs through `make install`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# measured total (child processes included) minus 2 points; see ARCHITECTURE.md "Tests"
COV_FAIL_UNDER ?= 90
# pytest-xdist workers: each has its own PostgreSQL cluster and ports; the tests mostly wait on child
# processes and the database, so two cores carry four workers
TEST_WORKERS ?= 4
PG_PACKAGES := postgresql-15 postgresql-client-15 postgresql-15-pgtap
BROWSER_PACKAGES := chromium
HA_PACKAGES := postgresql-15-auto-failover pg-auto-failover-cli

.PHONY: install system-deps test test-fast lint db-deploy run live status bench chaos ha backtest clean

install: system-deps $(STAMP)

# System packages from Debian, when missing: PostgreSQL 15 server binaries and pgTAP (needed by everything),
# Chromium (the browser tests), pg_auto_failover (the failover test and make ha). As root they are installed with apt-get; otherwise a missing PostgreSQL
# stops here with the command to run, and a missing browser is said here and fails the browser tests.
system-deps:
	@missing=""; \
	{ [ -f /usr/share/postgresql/15/extension/pgtap.control ] && [ -x /usr/lib/postgresql/15/bin/initdb ]; } || \
		missing="$$missing $(PG_PACKAGES)"; \
	[ -x /usr/bin/chromium ] || missing="$$missing $(BROWSER_PACKAGES)"; \
	{ command -v pg_autoctl >/dev/null && [ -f /usr/share/postgresql/15/extension/pgautofailover.control ]; } || \
		missing="$$missing $(HA_PACKAGES)"; \
	if [ -z "$$missing" ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing with apt-get"; \
		(apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null)) \
		&& echo "installed$$missing"; \
	elif echo "$$missing" | grep -q postgresql; then \
		echo "PostgreSQL 15 with pgTAP is missing: run as root: apt-get install$$missing" >&2; exit 1; \
	else \
		echo "warning:$$missing missing, so the browser or failover tests will fail: run as root: apt-get install$$missing" >&2; \
	fi

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -r requirements-dev.txt
	$(PIP) install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $(STAMP)

lint: install
	$(VENV)/bin/flake8 --max-line-length 120 pm_engine tests
	$(VENV)/bin/mypy pm_engine
	$(VENV)/bin/lint-imports --no-cache

test: install lint
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --durations=15 --cov=pm_engine --cov-report=term:skip-covered --cov-fail-under=$(COV_FAIL_UNDER)

# the quick loop: pure-Python unit tests and the pgTAP files (under 2 minutes)
test-fast: install
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) tests/unit tests/db/test_pgtap.py tests/layout

db-deploy: install
	$(VENV)/bin/pm-engine db-deploy $(if $(DB_CONFIG),--db-config $(DB_CONFIG))

run: install
	$(VENV)/bin/pm-engine run

status: install
	$(VENV)/bin/pm-engine status

bench: install
	$(VENV)/bin/pm-engine bench $(if $(QUICK),--quick) $(if $(JSON),--json $(JSON))

# the paper broker (with the hostile-input fuzzer), then orders over HTTP to the broker simulator with its faults
chaos: install
	$(VENV)/bin/pm-engine chaos
	$(VENV)/bin/pm-engine chaos --broker sim

# a pg_auto_failover formation on loopback, two engines, the primary killed mid-stream (docs/ha.md)
ha: install
	$(VENV)/bin/pm-engine chaos --failover

backtest: install
	$(VENV)/bin/pm-engine backtest examples/signals.csv --plot equity.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .coverage .coverage.*
