#!/usr/bin/env bash
# A tour of conveyor.config on this example: run by `make demo`.
set -euo pipefail
cd "$(dirname "$0")"
unset CONVEYOR_ENV R_CONFIG_ACTIVE CONVEYOR_CONFIG_FILE R_CONFIG_FILE WAREHOUSE_PASSWORD

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

step "One config.yml, one section per environment" "cat config.yml"
cat config.yml

for env in dev test prod; do
  step "The app in $env (Conveyor sets CONVEYOR_ENV=$env)" "CONVEYOR_ENV=$env python app.py"
  if [ "$env" = prod ]; then
    echo "(prod reads the warehouse password from the environment: WAREHOUSE_PASSWORD=...)"
    CONVEYOR_ENV=$env WAREHOUSE_PASSWORD=demo-secret python app.py
  else
    CONVEYOR_ENV=$env python app.py
  fi
done

step "Resolved values of test, and where each came from" "conveyor config show --env test"
conveyor config show --env test

step "What changes between test and prod" "conveyor config diff test prod"
conveyor config diff test prod

step "Check before deploying: prod needs WAREHOUSE_PASSWORD" "conveyor config check --env test --env prod"
if conveyor config check --env test --env prod; then
  echo "unexpected: the check passed without WAREHOUSE_PASSWORD" >&2
  exit 1
fi
echo "(exit code 1: a CI job would stop here)"

step "With the secret set, the check passes" \
  "WAREHOUSE_PASSWORD=... conveyor config check --env test --env prod"
WAREHOUSE_PASSWORD=demo-secret conveyor config check --env test --env prod

printf '\nDone. Read docs/config.md for the tutorial and reference.\n'
