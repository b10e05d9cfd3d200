# The verbs a user types, in sections in the README's order. `make help` lists them.
#
# Every value given on the command line reaches the recipes through the environment ("$$NAME"),
# never pasted into a shell line, and is checked against its pattern first (`checked`): a name
# such as NAME='x`touch /tmp/p`x' is refused, not run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# --- Settings of the verbs ------------------------------------------------------------------------
# The stack's settings file (written by `make up` when missing).
ENV_FILE ?= .env
# The docker compose command every compose verb runs.
COMPOSE ?= docker compose --env-file "$$ENV_FILE"
# The Python package manager (pip install uv).
UV ?= uv
# Extra pytest arguments for make test / e2e.
PYTEST_ARGS ?=
# make test's processes side by side (pytest-xdist); 2 suits the 2-core machines.
TEST_WORKERS ?= 2
# TLC taxi colour of the months: green or yellow.
COLOR ?= green
# Months as YYYY-MM: training and validation (train, tune), one month (score, monitor), a range
# or a list (backfill).
TRAIN_MONTH ?=
VAL_MONTH ?=
MONTH ?=
FROM ?=
TO ?=
MONTHS ?=
# backfill: monitor the scored months too (yes or no).
MONITOR ?= no
# monitor: judge what the model server answered that month (yes) rather than a scored month.
SERVED ?= no
# A registered version's number (monitor, rollback).
VERSION ?=
# The alias scoring uses.
ALIAS ?= champion
# Why a rollback is made (free text, kept in the alias history).
REASON ?=
# up: how many worker containers.
WORKERS ?=
# tune: how many Optuna trials.
TRIALS ?= 20
# upload-data: local TLC files.
FILES ?=
# An account (user, user-delete, grant, audit, worker-env).
NAME ?=
# grant: an experiment or a registered model, and the permission.
EXPERIMENT ?=
MODEL ?=
PERMISSION ?= READ
# worker-env: the address other hosts reach the stack at (https://... behind TLS).
HOST ?=
# history, audit: how many lines.
LIMIT ?= 50
# housekeeping: another retention, this once (days), and a dry run (yes).
RETENTION_DAYS ?=
DRY_RUN ?= no
# retry: a flow run's id or name.
RUN ?=
# backup, restore: where archives go, and the archive to restore.
BACKUP_DIR ?= backups
FILE ?=
# worker, worker-down: the settings file `make worker-env` wrote.
WORKER_ENV ?=
# `make local`'s data directory.
LOCAL_DIR ?= .local

USER_VARIABLES := ENV_FILE COLOR TRAIN_MONTH VAL_MONTH MONTH FROM TO MONTHS MONITOR SERVED \
	VERSION ALIAS REASON WORKERS TRIALS FILES NAME EXPERIMENT MODEL PERMISSION HOST LIMIT \
	RETENTION_DAYS DRY_RUN RUN BACKUP_DIR FILE WORKER_ENV LOCAL_DIR
# A value given on the command line is text, never make syntax: a $(shell ...) in a name is a
# name, refused by its pattern below, not run.
$(foreach v,$(USER_VARIABLES),$(eval override $(v) := $$(value $(v))))
export $(USER_VARIABLES)

# $(shell) sees no exported variable (GNU make 4.3): LOCAL_DIR is pasted, so it may hold no quote.
$(if $(findstring ',$(LOCAL_DIR)),$(error LOCAL_DIR may not hold a quote))
LOCAL_RUNNING := $(shell pid=$$(cat '$(LOCAL_DIR)/honcho.pid' 2>/dev/null) && kill -0 "$$pid" 2>/dev/null && echo yes)
# Which stack the verbs talk to: the local one while it runs for LOCAL_DIR, else the compose one.
# Every verb says which; STACK=compose or STACK=local chooses outright.
STACK ?= $(if $(LOCAL_RUNNING),local,compose)
LOCAL_STACK = $(UV) run --frozen python -m infra.local.stack
LOCAL_CLIENT = set -a && . "$$LOCAL_DIR/client.env" && set +a && $(UV) run --frozen
ifeq ($(STACK),local)
  STACK_CHECK := local-check
  ON_WORKER := $(LOCAL_CLIENT)
  SYNC_AUTOMATIONS := $(LOCAL_CLIENT) python -m infra.prefect.automations
else
  STACK_CHECK := compose-check
  # Runs started here are tagged with who started them (runs through the gateway get their account).
  ON_WORKER := $(COMPOSE) exec -T -e STARTED_BY="$$(id -un)@$$(hostname)" worker
  SYNC_AUTOMATIONS := $(COMPOSE) run --rm --no-deps prefect-automations
endif
WORKER_COMPOSE = docker compose --file infra/worker/compose.yml --env-file "$$WORKER_ENV"

# --- Patterns of the values ------------------------------------------------------------------------
PATTERN_NAME := [A-Za-z0-9][A-Za-z0-9._@-]{0,63}
PATTERN_RESOURCE := [A-Za-z0-9][A-Za-z0-9 ._/:-]{0,127}
PATTERN_MONTH := [0-9]{4}-(0[1-9]|1[0-2])
PATTERN_MONTHS := $(PATTERN_MONTH)( $(PATTERN_MONTH))*
PATTERN_VERSION := [1-9][0-9]{0,8}
PATTERN_NUMBER := [0-9]{1,6}
PATTERN_YES_NO := yes|no
PATTERN_COLOR := green|yellow
PATTERN_ALIAS := [a-z][a-z0-9_-]{0,63}
PATTERN_PERMISSION := READ|EDIT|MANAGE
PATTERN_HOST := [A-Za-z0-9][A-Za-z0-9.:/_-]{0,255}
PATTERN_PATH := [A-Za-z0-9._/+-]{1,1024}
PATTERN_PATHS := $(PATTERN_PATH)( +$(PATTERN_PATH))*
PATTERN_RUN := [A-Za-z0-9][A-Za-z0-9._-]{0,127}

# $(call require,VARIABLES,USAGE): stop a verb with its usage line (exit 2) unless every one of
# VARIABLES is set.
require = @$(foreach v,$(1),test -n "$$$(v)" &&) true || { echo 'usage: $(2)' >&2; exit 2; }
# $(call checked,VARIABLE,PATTERN): stop a verb (exit 2) when VARIABLE is set and does not match
# PATTERN whole; the value is read from the environment, never pasted into the line.
checked = @test -z "$$$(1)" || printf '%s' "$$$(1)" | grep -Eqx '$(2)' || { echo "make: $(1) must match $(2)" >&2; exit 2; }

##@ Start

.PHONY: help
help: ## List the targets, by section
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} /^[a-z0-9-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: env
env: ## Write .env with fresh secrets, or add settings it lacks (never changes a value)
	@python3 infra/make_env.py --output "$$ENV_FILE"

.PHONY: up
up: compose-only docker-check env ## Build the image, start every service, wait until healthy, print the URLs [WORKERS=n]
	$(call checked,WORKERS,$(PATTERN_NUMBER))
	@# One build for every Python role (they share the image): compose would build it once per
	@# service, each a new image, the tag left on the last and the others dangling.
	@$(COMPOSE) build worker
	@$(if $(WORKERS),WORKER_REPLICAS="$$WORKERS") $(COMPOSE) up --no-build --detach --wait --wait-timeout 300 || { \
		for service in $$($(COMPOSE) ps --all --format '{{.Service}} {{.State}} {{.ExitCode}}' | awk '$$2 != "running" && $$3 != "0" {print $$1}'); do \
			echo "--- $$service (exited), its last lines:" >&2; $(COMPOSE) logs --no-color --no-log-prefix --tail 15 "$$service" >&2; \
		done; exit 1; }
	@set -a; . "$$(realpath "$$ENV_FILE")"; set +a; \
	echo; echo "MLflow   http://localhost:$${MLFLOW_PORT:-5000}   (MLFLOW_TRACKING_URI for teammates)"; \
	echo "Prefect  http://localhost:$${PREFECT_PORT:-4200}   (API: http://localhost:$${PREFECT_PORT:-4200}/api; sign in with your MLflow account)"; \
	echo "Model    http://localhost:$${SERVING_PORT:-9696}   (POST /invocations: the champion, MLflow accounts)"; \
	echo "Data     http://localhost:$${DATA_PROXY_PORT:-5001}   (the data bucket for workers on other hosts: make worker-env)"

.PHONY: deploy
deploy: $(STACK_CHECK) ## Register the flows' deployments (prefect.yaml) with the worker's pool
	$(ON_WORKER) prefect --no-prompt deploy --all
	@$(SYNC_AUTOMATIONS)

.PHONY: local
local: .venv/.synced ## Start MLflow, Prefect and a worker as local processes, no Docker [LOCAL_DIR=.local]
	@$(LOCAL_STACK) up

.PHONY: local-down
local-down: ## Stop the local processes; LOCAL_DIR keeps the data
	@$(LOCAL_STACK) down

##@ Train, score and watch

.PHONY: upload-data
upload-data: $(STACK_CHECK) ## Store local TLC files in the data bucket: FILES="green_tripdata_2021-01.parquet ..."
	$(call require,FILES,make upload-data FILES="path/green_tripdata_2021-01.parquet ...")
	$(call checked,FILES,$(PATTERN_PATHS))
ifeq ($(STACK),local)
	$(LOCAL_CLIENT) python -m flows.cli upload $$(realpath $$FILES)
else
	@mounts=(); uploads=(); for file in $$FILES; do \
		mounts+=(-v "$$(realpath "$$file"):/upload/$$(basename "$$file"):ro"); uploads+=("/upload/$$(basename "$$file")"); \
	done; \
	$(COMPOSE) run --rm --no-deps "$${mounts[@]}" worker python -m flows.cli upload "$${uploads[@]}"
endif

.PHONY: train
train: $(STACK_CHECK) ## Train on the worker and promote if better: TRAIN_MONTH=2021-01 VAL_MONTH=2021-02 [COLOR=green]
	$(call require,TRAIN_MONTH VAL_MONTH,make train TRAIN_MONTH=YYYY-MM VAL_MONTH=YYYY-MM [COLOR=green])
	$(call checked,TRAIN_MONTH,$(PATTERN_MONTH))
	$(call checked,VAL_MONTH,$(PATTERN_MONTH))
	$(call checked,COLOR,$(PATTERN_COLOR))
	$(ON_WORKER) python -m flows.cli train --color "$$COLOR" \
		--train-month "$$TRAIN_MONTH" --val-month "$$VAL_MONTH"

.PHONY: score
score: $(STACK_CHECK) ## Predict a month with the champion on the worker: MONTH=2021-03 [COLOR=green] [ALIAS=champion]
	$(call require,MONTH,make score MONTH=YYYY-MM [COLOR=green] [ALIAS=champion])
	$(call checked,MONTH,$(PATTERN_MONTH))
	$(call checked,COLOR,$(PATTERN_COLOR))
	$(call checked,ALIAS,$(PATTERN_ALIAS))
	$(ON_WORKER) python -m flows.cli score --color "$$COLOR" --month "$$MONTH" --alias "$$ALIAS"

.PHONY: backfill
backfill: $(STACK_CHECK) ## Score months side by side on the pool: FROM=2021-01 TO=2021-06 (or MONTHS="2021-01 2023-03")
	$(call require,$(if $(MONTHS),MONTHS,FROM TO),make backfill FROM=YYYY-MM TO=YYYY-MM | MONTHS="YYYY-MM ..." [COLOR=green] [ALIAS=champion])
	$(call checked,FROM,$(PATTERN_MONTH))
	$(call checked,TO,$(PATTERN_MONTH))
	$(call checked,MONTHS,$(PATTERN_MONTHS))
	$(call checked,COLOR,$(PATTERN_COLOR))
	$(call checked,ALIAS,$(PATTERN_ALIAS))
	$(call checked,MONITOR,$(PATTERN_YES_NO))
	$(ON_WORKER) python -m flows.cli backfill --color "$$COLOR" --alias "$$ALIAS" \
		$(if $(MONTHS),--months $$MONTHS,--from "$$FROM" --to "$$TO") $(if $(filter yes,$(MONITOR)),--monitor)

.PHONY: monitor
monitor: $(STACK_CHECK) ## Watch the champion on a month (drift, errors; a breach retrains): MONTH=2023-03 [VERSION=n] [SERVED=yes: what the model server answered]
	$(call require,MONTH,make monitor MONTH=YYYY-MM [COLOR=green] [VERSION=n] [SERVED=yes])
	$(call checked,MONTH,$(PATTERN_MONTH))
	$(call checked,COLOR,$(PATTERN_COLOR))
	$(call checked,VERSION,$(PATTERN_VERSION))
	$(call checked,SERVED,$(PATTERN_YES_NO))
	$(ON_WORKER) python -m flows.cli monitor --color "$$COLOR" --month "$$MONTH" $(if $(VERSION),--version "$$VERSION") $(if $(filter yes,$(SERVED)),--served)

.PHONY: tune
tune: $(STACK_CHECK) ## Optuna search, trials as flow runs over the pool, then train the best: TRAIN_MONTH= VAL_MONTH= [TRIALS=20]
	$(call require,TRAIN_MONTH VAL_MONTH,make tune TRAIN_MONTH=YYYY-MM VAL_MONTH=YYYY-MM [TRIALS=20] [COLOR=green])
	$(call checked,TRAIN_MONTH,$(PATTERN_MONTH))
	$(call checked,VAL_MONTH,$(PATTERN_MONTH))
	$(call checked,TRIALS,$(PATTERN_NUMBER))
	$(call checked,COLOR,$(PATTERN_COLOR))
	$(ON_WORKER) python -m flows.cli tune --color "$$COLOR" --train-month "$$TRAIN_MONTH" \
		--val-month "$$VAL_MONTH" --trials "$$TRIALS"

.PHONY: history
history: $(STACK_CHECK) ## Every recorded move of champion and challenger, newest first: when, who, from, to, why [LIMIT=50]
	$(call checked,LIMIT,$(PATTERN_NUMBER))
	$(ON_WORKER) python -m flows.cli history --limit "$$LIMIT"

.PHONY: rollback
rollback: $(STACK_CHECK) ## Put the previous champion back (the model server follows): [VERSION=n] [REASON="..."]
	$(call checked,VERSION,$(PATTERN_VERSION))
	$(ON_WORKER) python -m flows.cli rollback $(if $(VERSION),--version "$$VERSION") --reason "$$REASON"

.PHONY: retry
retry: $(STACK_CHECK) ## Run a crashed or failed flow run again, same parameters: RUN=<flow-run id or name>
	$(call require,RUN,make retry RUN=<flow-run id or name>)
	$(call checked,RUN,$(PATTERN_RUN))
	$(ON_WORKER) prefect flow-run retry "$$RUN"

##@ Share with the team

.PHONY: user
user: compose-only docker-check ## Create a teammate's MLflow account and print its password once: NAME=alice
	$(call require,NAME,make user NAME=<username>)
	$(call checked,NAME,$(PATTERN_NAME))
	@$(COMPOSE) run --rm --no-deps mlflow-users python -m infra.mlflow.users create "$$NAME"

.PHONY: user-delete
user-delete: compose-only docker-check ## Delete an account (teammate or worker), everywhere within the password cache's TTL: NAME=alice
	$(call require,NAME,make user-delete NAME=<username>)
	$(call checked,NAME,$(PATTERN_NAME))
	@$(COMPOSE) run --rm --no-deps mlflow-users python -m infra.mlflow.users delete "$$NAME"

.PHONY: grant
grant: compose-only docker-check ## Give a user a permission on an experiment or model: NAME=alice EXPERIMENT=<name> [PERMISSION=READ|EDIT|MANAGE]
	$(call require,NAME $(if $(MODEL),MODEL,EXPERIMENT),make grant NAME=<user> EXPERIMENT=<name> | MODEL=<name> [PERMISSION=READ|EDIT|MANAGE])
	$(call checked,NAME,$(PATTERN_NAME))
	$(call checked,EXPERIMENT,$(PATTERN_RESOURCE))
	$(call checked,MODEL,$(PATTERN_RESOURCE))
	$(call checked,PERMISSION,$(PATTERN_PERMISSION))
	@$(COMPOSE) run --rm --no-deps mlflow-users python -m infra.mlflow.users grant "$$NAME" \
		$(if $(EXPERIMENT),--experiment "$$EXPERIMENT",--model "$$MODEL") --permission "$$PERMISSION"

.PHONY: audit
audit: compose-only docker-check ## Print the Prefect gateway's audit log, newest first: [NAME=alice] [LIMIT=50]
	$(call checked,NAME,$(PATTERN_NAME))
	$(call checked,LIMIT,$(PATTERN_NUMBER))
	@$(COMPOSE) run --rm --no-deps -T mlflow-users python -m infra.mlflow.users audit \
		--limit "$$LIMIT" $(if $(NAME),--username "$$NAME")

.PHONY: worker-env
worker-env: compose-only docker-check ## Account and settings file for a worker on another host: NAME=laptop-dana [HOST=stack.example.org]
	$(call require,NAME,make worker-env NAME=<worker name> [HOST=<address other hosts reach this stack at>])
	$(call checked,NAME,$(PATTERN_NAME))
	$(call checked,HOST,$(PATTERN_HOST))
	$(call checked,WORKER_ENV,$(PATTERN_PATH))
	@set -o pipefail; $(COMPOSE) run --rm --no-deps -T mlflow-users python -m infra.mlflow.users worker "$$NAME" \
		| python3 -m infra.worker.settings_file --env-file "$$ENV_FILE" --name "$$NAME" $(if $(HOST),--host "$$HOST") --output "$${WORKER_ENV:-worker-$$NAME.env}"

.PHONY: worker
worker: docker-check ## On another host: join the stack's pool as a worker: WORKER_ENV=worker-<name>.env
	$(call require,WORKER_ENV,make worker WORKER_ENV=worker-<name>.env (written by make worker-env on the stack'"'"'s machine))
	$(call checked,WORKER_ENV,$(PATTERN_PATH))
	$(WORKER_COMPOSE) up --build --detach --wait --wait-timeout 300
	@echo "worker $$(sed -n 's/^WORKER_NAME=//p' "$$WORKER_ENV") is on the pool; make worker-down WORKER_ENV=$$WORKER_ENV stops it"

.PHONY: worker-down
worker-down: docker-check ## Stop this host's worker: WORKER_ENV=worker-<name>.env
	$(call require,WORKER_ENV,make worker-down WORKER_ENV=worker-<name>.env)
	$(call checked,WORKER_ENV,$(PATTERN_PATH))
	$(WORKER_COMPOSE) down

##@ Operate

# The machine's own Python for the host-side helpers (standard library only), with the names
# every package shares (platform_names, a module of the standard library only) on its path.
HOST_PYTHON := PYTHONPATH=services/mlflow/proxied-artifacts python3

.PHONY: backup
backup: compose-only docker-check ## Archive the databases and buckets of the running stack into BACKUP_DIR (backups/)
	$(call checked,BACKUP_DIR,$(PATTERN_PATH))
	@$(HOST_PYTHON) -m infra.backup.archive backup --env-file "$$ENV_FILE" --dir "$$BACKUP_DIR"

.PHONY: restore
restore: compose-only docker-check ## Replace the stack's databases and buckets with an archive: FILE=backups/....tar
	$(call require,FILE,make restore FILE=backups/<project>-<time>.tar)
	$(call checked,FILE,$(PATTERN_PATH))
	@$(HOST_PYTHON) -m infra.backup.archive restore --env-file "$$ENV_FILE" "$$FILE"

.PHONY: upgrade
# The settings this release adds go into .env first (`env`: nothing existing changes), so the new
# compose file can be read at all; then the backup, which must succeed before anything else is
# touched; then the new images, migrations, services and deployments.
upgrade: compose-only docker-check env ## After a git pull: back up the running stack, then build, migrate MLflow's databases, start, deploy
	@running=$$($(COMPOSE) ps --status running --services) || { echo "make upgrade: docker compose cannot read the stack with $$ENV_FILE (above); nothing was changed" >&2; exit 1; }; \
		grep -qx postgres <<< "$$running" || { echo "make upgrade: the stack is not running; make up the version it was made with first, so the backup has everything" >&2; exit 1; }
	@$(MAKE) --no-print-directory backup || { echo "make upgrade: the running stack could not be backed up (above), so nothing was upgraded; the stack runs as before" >&2; exit 1; }
	@$(MAKE) --no-print-directory up
	@$(MAKE) --no-print-directory deploy
	@echo "upgraded; the backup taken first is the newest archive in $$BACKUP_DIR/"

.PHONY: housekeeping
housekeeping: $(STACK_CHECK) ## Delete what the retention keeps no longer, now (it runs daily), report sizes: [RETENTION_DAYS=n] [DRY_RUN=yes]
	$(call checked,RETENTION_DAYS,$(PATTERN_NUMBER))
	$(call checked,DRY_RUN,$(PATTERN_YES_NO))
	$(ON_WORKER) python -m flows.cli housekeeping $(if $(RETENTION_DAYS),--retention-days "$$RETENTION_DAYS") $(if $(filter yes,$(DRY_RUN)),--dry-run)

.PHONY: ps
ps: $(STACK_CHECK) ## Show the services and their health
ifeq ($(STACK),local)
	@$(LOCAL_STACK) status
else
	$(COMPOSE) ps
endif

.PHONY: logs
logs: $(STACK_CHECK) ## Follow the services' logs
ifeq ($(STACK),local)
	tail --lines=100 --follow "$$LOCAL_DIR/logs/stack.log"
else
	$(COMPOSE) logs --follow --tail=100
endif

.PHONY: down
down: compose-only ## Stop the services; data volumes are kept
	$(COMPOSE) down

.PHONY: clean
clean: compose-only ## Stop the services and DELETE their data volumes (databases, buckets)
	@echo "Removing the stack and its volumes: every run, model, artifact and flow run is deleted."
	$(COMPOSE) down --volumes --remove-orphans

##@ Develop

# The MLflow apps are a path package installed as a copy: uv reinstalls it only when asked.
MLFLOW_APPS := $(wildcard services/mlflow/proxied-artifacts/*/*.py services/mlflow/proxied-artifacts/*/py.typed services/mlflow/proxied-artifacts/pyproject.toml)
.venv/.synced: pyproject.toml uv.lock $(MLFLOW_APPS)
	$(UV) sync --frozen --reinstall-package mlflow-proxied-artifacts
	@touch $@

.PHONY: test
test: .venv/.synced ## Run the test suite: code, security and the services on real servers (no Docker)
	$(UV) run --frozen pytest -m "not e2e and not flows" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: test-flows
test-flows: .venv/.synced ## The flows' whole lifecycle on real servers, on the real months (no Docker)
	$(UV) run --frozen pytest -m "flows" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: e2e
e2e: docker-check .venv/.synced ## Bring up a throwaway compose stack, test it end to end (faults last), remove it
	$(UV) run --frozen pytest -m e2e tests/e2e $(PYTEST_ARGS)

.PHONY: e2e-faults
e2e-faults: docker-check .venv/.synced ## Only the fault injection of make e2e: outages, crashes, bad input, backups
	$(UV) run --frozen pytest -m faults tests/e2e $(PYTEST_ARGS)

.PHONY: lint
lint: .venv/.synced ## Check style, common bugs and types (ruff; mypy on flows/, infra/ and services/)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

# --- Checks the verbs run first (not for typing) ---------------------------------------------------

.PHONY: compose-check
compose-check: docker-check
	@echo "make $(firstword $(MAKECMDGOALS)): the compose stack ($$ENV_FILE)"

.PHONY: compose-only
compose-only:
	@test "$(STACK)" != local || { echo "make $(firstword $(MAKECMDGOALS)) works on the compose stack only, and the verbs talk to the local stack in $$LOCAL_DIR now (STACK=local). Add STACK=compose, or stop the local stack with make local-down." >&2; exit 2; }
	@echo "make $(firstword $(MAKECMDGOALS)): the compose stack ($$ENV_FILE)"

.PHONY: local-check
local-check:
	@test "$(LOCAL_RUNNING)" = yes || { echo "make $(firstword $(MAKECMDGOALS)): STACK=local, but no local stack runs for LOCAL_DIR=$$LOCAL_DIR (make local starts it)" >&2; exit 2; }
	@echo "make $(firstword $(MAKECMDGOALS)): the local stack in $$LOCAL_DIR"

.PHONY: docker-check
docker-check:
	@command -v docker >/dev/null || { echo "make: docker is not installed (https://docs.docker.com/engine/install/)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make: no Docker engine answers (is dockerd running, and may this user reach it?)" >&2; exit 1; }
	@docker compose version >/dev/null 2>&1 || { echo "make: Docker Compose v2 is missing (the 'docker compose' plugin)" >&2; exit 1; }
