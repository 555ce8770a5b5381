#!/bin/sh
# A sample for `cognito-onboard status --on-confirmed samples/on-confirmed.sh` (or `run`).
# It receives one newly confirmed provider as a JSON object on stdin:
#   {"pool": "...", "username": "...", "email": "...", "groups": [...],
#    "invited_at": "...", "confirmed_at": "..."}
# Replace the body with what hands the provider over (send the API credentials, open a
# ticket, ...). Exit 0 only once that is done: any other exit, or running past
# --on-confirmed-timeout, makes the next run try again; after an exit 0 it is never run again
# for this provider.
set -eu
provider=$(cat)
printf '%s\n' "$provider" >> "${HANDOVER_LOG:-handed-over.jsonl}"
