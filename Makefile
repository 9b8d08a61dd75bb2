# Shortcuts for running payledger with Docker Compose (compose.yaml) and for developing it. `make` lists them.
# Every target is one or two plain commands: read the recipe to do the same by hand.

COMPOSE ?= docker compose
# The binary `make backup-sqlite` runs (an installed one, or e.g. PAYLEDGER=./target/release/payledger).
PAYLEDGER ?= payledger
IMAGE ?= payledger:local
BACKUP_DIR ?= backups
STAMP := $(shell date -u +%Y%m%dT%H%M%SZ)

.DEFAULT_GOAL := help
.PHONY: help up down restart logs logs-worker migrate verify backup backup-sqlite certs test bench fmt lint \
	deploy-lint image image-smoke

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# ---- The compose stack: postgres, migrate, api (http://127.0.0.1:8000), worker; nginx with --profile proxy ----

up: ## Build the image and start the stack in the background (migrations run first)
	$(COMPOSE) up --build --detach
	@echo "payledger listens on $$($(COMPOSE) port api 8000); without PAYLEDGER_ADMIN_PASSWORD in .env the first"
	@echo "admin's generated password is printed once in: $(COMPOSE) logs api"

down: ## Stop and remove the stack's containers (the volumes, and so the data, stay)
	$(COMPOSE) down

restart: ## Restart the api and worker processes (to apply a changed .env or image: make up)
	$(COMPOSE) restart api worker

logs: ## Follow every service's log
	$(COMPOSE) logs --follow --tail=200

logs-worker: ## Follow the payout workers' log
	$(COMPOSE) logs --follow --tail=200 worker

migrate: ## Run `payledger migrate` against the stack's database
	$(COMPOSE) run --rm migrate

verify: ## Run `payledger verify` against the stack's database (exit 1: violations, 2: could not check)
	$(COMPOSE) run --rm --no-deps migrate verify

backup: ## pg_dump the stack's database (custom format) to backups/payledger-<UTC time>.dump
	@mkdir -p $(BACKUP_DIR)
	$(COMPOSE) exec -T postgres sh -c 'pg_dump --format=custom --username="$$POSTGRES_USER" --dbname="$$POSTGRES_DB"' \
		> $(BACKUP_DIR)/payledger-$(STAMP).dump.partial
	mv $(BACKUP_DIR)/payledger-$(STAMP).dump.partial $(BACKUP_DIR)/payledger-$(STAMP).dump
	@echo "restore: pg_restore --clean --if-exists --dbname=<url> $(BACKUP_DIR)/payledger-$(STAMP).dump"

backup-sqlite: ## `payledger backup` of the SQLite database (DATABASE_URL / PAYLEDGER_DATA_DIR) to backups/
	@mkdir -p $(BACKUP_DIR)
	$(PAYLEDGER) backup --to $(BACKUP_DIR)/payledger-$(STAMP).db

certs: ## A self-signed certificate for the proxy profile in deploy/nginx/certs/ (replace it with a real one)
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
		-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
		-keyout deploy/nginx/certs/payledger.key -out deploy/nginx/certs/payledger.crt
	chmod 0600 deploy/nginx/certs/payledger.key

# ---- Development ----

test: ## The whole test suite (README: Test it)
	cargo test --workspace

bench: ## The benchmark matrix behind BENCHMARKS.md (PG_URL=postgres://… adds PostgreSQL)
	bash scripts/bench-matrix.sh

fmt: ## Format the code
	cargo fmt --all

lint: ## Formatting, clippy with warnings as errors, and the deployment files' checks
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	bash scripts/deploy-lint.sh

deploy-lint: ## Only the deployment files' checks (hadolint, compose schema, nginx -t, systemd-analyze)
	bash scripts/deploy-lint.sh

image: ## Build the image with docker (compiles the release binary)
	docker build --tag $(IMAGE) --build-arg PAYLEDGER_REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .

image-smoke: ## Build the image around the debug binary with buildah and run the README's examples in it (root)
	bash scripts/image-smoke.sh
