#!/bin/sh
# A sample for `cognito-onboard run --on-expiring 1d samples/remind-expiring.sh` (or `status`):
# reminds a provider, through SES, that their invitation expires soon. It receives one pending
# provider as a JSON object on stdin (never a password):
#   {"pool": "...", "username": "...", "email": "...", "name": "...",
#    "invited_at": "...", "expires_at": "..."}
# and sends one email with `aws sesv2 send-email` from REMINDER_FROM (a verified SES identity),
# pointing to REMINDER_SIGN_IN_URL (the hosted UI). It needs the AWS CLI and credentials of its
# own that may send email (an instance role, or --on-confirmed-env to pass the tool's). Exit 0
# only once the mail is accepted: any other exit makes the next run try again; after an exit 0
# it is not run again for this invitation (a re-issued invitation gets its own reminder).
set -eu
: "${REMINDER_FROM:?set REMINDER_FROM to a verified SES sender}"
provider=$(cat)
# The message, built from the JSON by Python (the AWS CLI takes the content as JSON).
args=$(printf '%s' "$provider" | python3 -c '
import json, os, sys
p = json.load(sys.stdin)
if not p.get("email"):
    sys.exit("no email for " + str(p.get("username")))
name = p.get("name") or p["email"]
url = os.environ.get("REMINDER_SIGN_IN_URL", "the sign-in page you were sent")
invited = p["invited_at"][:10]
expires = p["expires_at"][:16].replace("T", " ")
text = (
    "Dear " + name + ",\n\n"
    "the invitation we sent you on " + invited + " expires on " + expires + " UTC.\n"
    "Please sign in before then with the username and temporary password in that email: "
    + url + "\n"
    "If you cannot find it, look in your spam folder, or reply to this email.\n"
)
content = {"Simple": {"Subject": {"Data": "Your invitation expires soon"}, "Body": {"Text": {"Data": text}}}}
print(json.dumps({"ToAddresses": [p["email"]]}))
print(json.dumps(content))
')
destination=$(printf '%s\n' "$args" | sed -n 1p)
content=$(printf '%s\n' "$args" | sed -n 2p)
aws sesv2 send-email --from-email-address "$REMINDER_FROM" --destination "$destination" --content "$content" >/dev/null
