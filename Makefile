# The verbs a user types. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENV_FILE ?= .env
COMPOSE ?= docker compose --env-file $(ENV_FILE)
UV ?= uv
PYTEST_ARGS ?=
# make test's processes side by side, each with its own servers (tests/conftest.py) and whole
# test files (a server a file needs starts on one of them). 2 suits the 2-core machines.
TEST_WORKERS ?= 2
COLOR ?= green
TRAIN_MONTH ?=
VAL_MONTH ?=
MONTH ?=
FROM ?=
TO ?=
MONTHS ?=
MONITOR ?= no
VERSION ?=
WORKERS ?=
TRIALS ?= 20
ALIAS ?= champion
FILES ?=
NAME ?=
EXPERIMENT ?=
MODEL ?=
PERMISSION ?= READ
# `make local`'s data directory.
LOCAL_DIR ?= .local
LOCAL_RUNNING := $(shell pid=$$(cat "$(LOCAL_DIR)/honcho.pid" 2>/dev/null) && kill -0 "$$pid" 2>/dev/null && echo yes)
# Which stack the verbs talk to: the local one while it runs for LOCAL_DIR, else the compose one.
# Every verb says which; STACK=compose or STACK=local chooses outright.
STACK ?= $(if $(LOCAL_RUNNING),local,compose)
LOCAL_STACK = LOCAL_DIR="$(LOCAL_DIR)" $(UV) run --frozen python -m infra.local.stack
LOCAL_CLIENT = set -a && . "$(LOCAL_DIR)/client.env" && set +a && $(UV) run --frozen
ifeq ($(STACK),local)
  STACK_CHECK := local-check
  ON_WORKER := $(LOCAL_CLIENT)
  SYNC_AUTOMATIONS := $(LOCAL_CLIENT) python -m infra.prefect.automations
else
  STACK_CHECK := compose-check
  # Runs started here are tagged with who started them (runs through the gateway get their account).
  ON_WORKER := $(COMPOSE) exec -T -e STARTED_BY="$(shell id -un)@$(shell hostname)" worker
  SYNC_AUTOMATIONS := $(COMPOSE) run --rm --no-deps prefect-automations
endif
BACKUP_DIR ?= backups
FILE ?=
RUN ?=
REASON ?=

# $(call require,VARIABLES,USAGE): stop a verb with its usage line (exit 2) unless every one of
# VARIABLES is set.
require = @$(foreach v,$(1),test -n "$($(v))" &&) true || { echo 'usage: $(2)' >&2; exit 2; }

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: env
env: ## Write .env with fresh secrets, or add settings it lacks (never changes a value)
	@python3 infra/make_env.py --output $(ENV_FILE)

.PHONY: compose-check
compose-check: docker-check
	@echo "make $(firstword $(MAKECMDGOALS)): the compose stack ($(ENV_FILE))"

.PHONY: compose-only
compose-only:
	@test "$(STACK)" != local || { echo "make $(firstword $(MAKECMDGOALS)) works on the compose stack only, and the verbs talk to the local stack in $(LOCAL_DIR) now (STACK=local). Add STACK=compose, or stop the local stack with make local-down." >&2; exit 2; }
	@echo "make $(firstword $(MAKECMDGOALS)): the compose stack ($(ENV_FILE))"

.PHONY: docker-check
docker-check:
	@command -v docker >/dev/null || { echo "make: docker is not installed (https://docs.docker.com/engine/install/)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make: no Docker engine answers (is dockerd running, and may this user reach it?)" >&2; exit 1; }
	@docker compose version >/dev/null 2>&1 || { echo "make: Docker Compose v2 is missing (the 'docker compose' plugin)" >&2; exit 1; }

.PHONY: up
up: compose-only docker-check env ## Build the image, start every service, wait until healthy, print the URLs [WORKERS=n]
	@# One build for every Python role (they share the image): compose would build it once per
	@# service, each a new image, the tag left on the last and the others dangling.
	@$(COMPOSE) build worker
	@$(if $(WORKERS),WORKER_REPLICAS=$(WORKERS)) $(COMPOSE) up --no-build --detach --wait --wait-timeout 300 || { \
		for service in $$($(COMPOSE) ps --all --format '{{.Service}} {{.State}} {{.ExitCode}}' | awk '$$2 != "running" && $$3 != "0" {print $$1}'); do \
			echo "--- $$service (exited), its last lines:" >&2; $(COMPOSE) logs --no-color --no-log-prefix --tail 15 "$$service" >&2; \
		done; exit 1; }
	@set -a; . "$(abspath $(ENV_FILE))"; set +a; \
	echo; echo "MLflow   http://localhost:$${MLFLOW_PORT:-5000}   (MLFLOW_TRACKING_URI for teammates)"; \
	echo "Prefect  http://localhost:$${PREFECT_PORT:-4200}   (API: http://localhost:$${PREFECT_PORT:-4200}/api; sign in with your MLflow account)"; \
	echo "Model    http://localhost:$${SERVING_PORT:-9696}   (POST /invocations: the champion, MLflow accounts)"; \
	echo "Data     http://localhost:$${DATA_PROXY_PORT:-5001}   (the data bucket for workers on other hosts: make worker-env)"

.PHONY: local
local: .venv/.synced ## Start MLflow, Prefect and a worker as local processes, no Docker [LOCAL_DIR=.local]
	@$(LOCAL_STACK) up

.PHONY: local-down
local-down: ## Stop the local processes; LOCAL_DIR keeps the data
	@$(LOCAL_STACK) down

.PHONY: local-check
local-check:
	@test "$(LOCAL_RUNNING)" = yes || { echo "make $(firstword $(MAKECMDGOALS)): STACK=local, but no local stack runs for LOCAL_DIR=$(LOCAL_DIR) (make local starts it)" >&2; exit 2; }
	@echo "make $(firstword $(MAKECMDGOALS)): the local stack in $(LOCAL_DIR)"

.PHONY: deploy
deploy: $(STACK_CHECK) ## Register the flows' deployments (prefect.yaml) with the worker's pool
	$(ON_WORKER) prefect --no-prompt deploy --all
	@$(SYNC_AUTOMATIONS)

.PHONY: retry
retry: $(STACK_CHECK) ## Run a crashed or failed flow run again, same parameters: RUN=<flow-run id or name>
	$(call require,RUN,make retry RUN=<flow-run id or name>)
	$(ON_WORKER) prefect flow-run retry "$(RUN)"

.PHONY: upload-data
upload-data: $(STACK_CHECK) ## Store local TLC files in the data bucket: FILES="green_tripdata_2021-01.parquet ..."
	$(call require,FILES,make upload-data FILES="path/green_tripdata_2021-01.parquet ...")
ifeq ($(STACK),local)
	$(LOCAL_CLIENT) python -m flows.cli upload $(abspath $(FILES))
else
	$(COMPOSE) run --rm --no-deps $(foreach f,$(FILES),-v "$(abspath $(f)):/upload/$(notdir $(f)):ro") \
		worker python -m flows.cli upload $(addprefix /upload/,$(notdir $(FILES)))
endif

.PHONY: train
train: $(STACK_CHECK) ## Train on the worker and promote if better: TRAIN_MONTH=2021-01 VAL_MONTH=2021-02 [COLOR=green]
	$(call require,TRAIN_MONTH VAL_MONTH,make train TRAIN_MONTH=YYYY-MM VAL_MONTH=YYYY-MM [COLOR=green])
	$(ON_WORKER) python -m flows.cli train --color $(COLOR) \
		--train-month $(TRAIN_MONTH) --val-month $(VAL_MONTH)

.PHONY: score
score: $(STACK_CHECK) ## Predict a month with the champion on the worker: MONTH=2021-03 [COLOR=green] [ALIAS=champion]
	$(call require,MONTH,make score MONTH=YYYY-MM [COLOR=green] [ALIAS=champion])
	$(ON_WORKER) python -m flows.cli score --color $(COLOR) --month $(MONTH) --alias $(ALIAS)

.PHONY: history
history: $(STACK_CHECK) ## Every recorded move of champion and challenger, newest first: when, who, from, to, why [LIMIT=50]
	$(ON_WORKER) python -m flows.cli history --limit $(or $(LIMIT),50)

.PHONY: housekeeping
housekeeping: $(STACK_CHECK) ## Delete what the retention keeps no longer, now (it runs daily), report sizes: [RETENTION_DAYS=n] [DRY_RUN=yes]
	$(ON_WORKER) python -m flows.cli housekeeping $(if $(RETENTION_DAYS),--retention-days $(RETENTION_DAYS)) $(if $(filter yes,$(DRY_RUN)),--dry-run)

.PHONY: rollback
rollback: $(STACK_CHECK) ## Put the previous champion back (the model server follows): [VERSION=n] [REASON="..."]
	$(ON_WORKER) python -m flows.cli rollback $(if $(VERSION),--version $(VERSION)) --reason "$(REASON)"

.PHONY: backfill
backfill: $(STACK_CHECK) ## Score months side by side on the pool: FROM=2021-01 TO=2021-06 (or MONTHS="2021-01 2023-03")
	$(call require,$(if $(MONTHS),MONTHS,FROM TO),make backfill FROM=YYYY-MM TO=YYYY-MM | MONTHS="YYYY-MM ..." [COLOR=green] [ALIAS=champion])
	$(ON_WORKER) python -m flows.cli backfill --color $(COLOR) --alias $(ALIAS) \
		$(if $(MONTHS),--months $(MONTHS),--from $(FROM) --to $(TO)) $(if $(filter yes,$(MONITOR)),--monitor)

.PHONY: monitor
monitor: $(STACK_CHECK) ## Watch the champion on a month (drift, errors; a breach retrains): MONTH=2023-03 [VERSION=n] [SERVED=yes: what the model server answered]
	$(call require,MONTH,make monitor MONTH=YYYY-MM [COLOR=green] [VERSION=n] [SERVED=yes])
	$(ON_WORKER) python -m flows.cli monitor --color $(COLOR) --month $(MONTH) $(if $(VERSION),--version $(VERSION)) $(if $(filter yes,$(SERVED)),--served)

.PHONY: tune
tune: $(STACK_CHECK) ## Optuna search, trials as flow runs over the pool, then train the best: TRAIN_MONTH= VAL_MONTH= [TRIALS=20]
	$(call require,TRAIN_MONTH VAL_MONTH,make tune TRAIN_MONTH=YYYY-MM VAL_MONTH=YYYY-MM [TRIALS=20] [COLOR=green])
	$(ON_WORKER) python -m flows.cli tune --color $(COLOR) --train-month $(TRAIN_MONTH) \
		--val-month $(VAL_MONTH) --trials $(TRIALS)

.PHONY: user
user: compose-only docker-check ## Create a teammate's MLflow account and print its password once: NAME=alice
	$(call require,NAME,make user NAME=<username>)
	@$(COMPOSE) run --rm --no-deps mlflow-users python -m infra.mlflow.users create "$(NAME)"

.PHONY: grant
grant: compose-only docker-check ## Give a user a permission on an experiment or model: NAME=alice EXPERIMENT=<name> [PERMISSION=READ|EDIT|MANAGE]
	$(call require,NAME $(if $(MODEL),MODEL,EXPERIMENT),make grant NAME=<user> EXPERIMENT=<name> | MODEL=<name> [PERMISSION=READ|EDIT|MANAGE])
	@$(COMPOSE) run --rm --no-deps mlflow-users python -m infra.mlflow.users grant "$(NAME)" \
		$(if $(EXPERIMENT),--experiment "$(EXPERIMENT)",--model "$(MODEL)") --permission $(PERMISSION)

.PHONY: audit
audit: compose-only docker-check ## Print the Prefect gateway's audit log, newest first: [NAME=alice] [LIMIT=50]
	@$(COMPOSE) run --rm --no-deps -T mlflow-users python -m infra.mlflow.users audit \
		--limit $(or $(LIMIT),50) $(if $(NAME),--username "$(NAME)")

.PHONY: user-delete
user-delete: compose-only docker-check ## Delete an account (teammate or worker), everywhere within the password cache's TTL: NAME=alice
	$(call require,NAME,make user-delete NAME=<username>)
	@$(COMPOSE) run --rm --no-deps mlflow-users python -m infra.mlflow.users delete "$(NAME)"

.PHONY: worker-env
worker-env: compose-only docker-check ## Account and settings file for a worker on another host: NAME=laptop-dana [HOST=stack.example.org]
	$(call require,NAME,make worker-env NAME=<worker name> [HOST=<address other hosts reach this stack at>])
	@set -o pipefail; $(COMPOSE) run --rm --no-deps -T mlflow-users python -m infra.mlflow.users worker "$(NAME)" \
		| python3 -m infra.worker.settings_file --env-file $(ENV_FILE) --name "$(NAME)" $(if $(HOST),--host "$(HOST)") --output "$(or $(WORKER_ENV),worker-$(NAME).env)"

# A worker on another host (this checkout on that host; the file from `make worker-env`).
WORKER_ENV ?=
WORKER_COMPOSE = docker compose --file infra/worker/compose.yml --env-file $(WORKER_ENV)

.PHONY: worker
worker: docker-check ## On another host: join the stack's pool as a worker: WORKER_ENV=worker-<name>.env
	$(call require,WORKER_ENV,make worker WORKER_ENV=worker-<name>.env (written by make worker-env on the stack'"'"'s machine))
	$(WORKER_COMPOSE) up --build --detach --wait --wait-timeout 300
	@echo "worker $$(sed -n 's/^WORKER_NAME=//p' $(WORKER_ENV)) is on the pool; make worker-down WORKER_ENV=$(WORKER_ENV) stops it"

.PHONY: worker-down
worker-down: docker-check ## Stop this host's worker: WORKER_ENV=worker-<name>.env
	$(call require,WORKER_ENV,make worker-down WORKER_ENV=worker-<name>.env)
	$(WORKER_COMPOSE) down

.PHONY: backup
backup: compose-only docker-check ## Archive the databases and buckets of the running stack into BACKUP_DIR (backups/)
	@python3 -m infra.backup.archive backup --env-file $(ENV_FILE) --dir $(BACKUP_DIR)

.PHONY: upgrade
# The settings this release adds go into .env first (`env`: nothing existing changes), so the new
# compose file can be read at all; then the backup, which must succeed before anything else is
# touched; then the new images, migrations, services and deployments.
upgrade: compose-only docker-check env ## After a git pull: back up the running stack, then build, migrate MLflow's databases, start, deploy
	@running=$$($(COMPOSE) ps --status running --services) || { echo "make upgrade: docker compose cannot read the stack with $(ENV_FILE) (above); nothing was changed" >&2; exit 1; }; \
		grep -qx postgres <<< "$$running" || { echo "make upgrade: the stack is not running; make up the version it was made with first, so the backup has everything" >&2; exit 1; }
	@$(MAKE) --no-print-directory backup || { echo "make upgrade: the running stack could not be backed up (above), so nothing was upgraded; the stack runs as before" >&2; exit 1; }
	@$(MAKE) --no-print-directory up
	@$(MAKE) --no-print-directory deploy
	@echo "upgraded; the backup taken first is the newest archive in $(BACKUP_DIR)/"

.PHONY: restore
restore: compose-only docker-check ## Replace the stack's databases and buckets with an archive: FILE=backups/....tar
	$(call require,FILE,make restore FILE=backups/<project>-<time>.tar)
	@python3 -m infra.backup.archive restore --env-file $(ENV_FILE) "$(FILE)"

.PHONY: down
down: compose-only ## Stop the services; data volumes are kept
	$(COMPOSE) down

.PHONY: clean
clean: compose-only ## Stop the services and DELETE their data volumes (databases, buckets)
	@echo "Removing the stack and its volumes: every run, model, artifact and flow run is deleted."
	$(COMPOSE) down --volumes --remove-orphans

.PHONY: logs
logs: $(STACK_CHECK) ## Follow the services' logs
ifeq ($(STACK),local)
	tail --lines=100 --follow "$(LOCAL_DIR)/logs/stack.log"
else
	$(COMPOSE) logs --follow --tail=100
endif

.PHONY: ps
ps: $(STACK_CHECK) ## Show the services and their health
ifeq ($(STACK),local)
	@$(LOCAL_STACK) status
else
	$(COMPOSE) ps
endif

# The MLflow apps are a path package installed as a copy: uv reinstalls it only when asked.
MLFLOW_APPS := $(wildcard services/mlflow/proxied-artifacts/*/*.py services/mlflow/proxied-artifacts/*/py.typed services/mlflow/proxied-artifacts/pyproject.toml)
.venv/.synced: pyproject.toml uv.lock $(MLFLOW_APPS)
	$(UV) sync --frozen --reinstall-package mlflow-proxied-artifacts
	@touch $@

.PHONY: test
test: .venv/.synced ## Run the test suite (no Docker needed: it starts real servers itself)
	$(UV) run --frozen pytest -m "not e2e" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: e2e
e2e: docker-check .venv/.synced ## Bring up a throwaway compose stack, test it end to end (faults last), remove it
	$(UV) run --frozen pytest -m e2e tests/e2e $(PYTEST_ARGS)

.PHONY: e2e-faults
e2e-faults: docker-check .venv/.synced ## Only the fault injection of make e2e: outages, crashes, bad input, backups
	$(UV) run --frozen pytest -m faults tests/e2e $(PYTEST_ARGS)

.PHONY: lint
lint: .venv/.synced ## Check style, common bugs and types (ruff; mypy on flows/ and infra/)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
