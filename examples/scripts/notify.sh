#!/bin/sh
# Certyard script example (shell): keep every event in a JSON Lines file, and keep early
# expiry warnings quiet.
#
# Register it with the built-in script handler ("certyard.script"): interpreter "shell",
# script "notify.sh", and these arguments, one per line ({name} is replaced by a field
# of the event; a field the event lacks stays as written):
#
#     /var/log/certyard/events.jsonl
#     {subject_label}
#     {days}
#     30
#
# 1. The event arrives as one line of JSON on standard input; it is appended as is to the
#    file given as first argument.
# 2. One line about it is printed (kept on the run).
# 3. For a certificate.expiring warning whose threshold (the third argument) is above the
#    fourth argument, {"suppress_email": true} is written to the file named by
#    CERTYARD_CONTEXT_OUT: the email handlers that run after this one send nothing.
#
# Exit code 0 is success; anything else fails the run with the end of standard error.
# POSIX sh only: the script runs with PATH=/usr/local/bin:/usr/bin:/bin.
set -eu

log_file=${1:?usage: notify.sh LOG_FILE [SUBJECT] [DAYS] [QUIET_ABOVE]}
subject=${2:-}
days=${3:-}
quiet_above=${4:-}

is_number() {
    case $1 in '' | *[!0-9]*) return 1 ;; esac
}

event=$(cat)
if [ -z "$event" ]; then
    echo "no event on standard input" >&2
    exit 2
fi
printf '%s\n' "$event" >>"$log_file"

if is_number "$days"; then
    echo "$CERTYARD_EVENT_KIND (event $CERTYARD_EVENT_ID): $subject, threshold $days days"
else
    echo "$CERTYARD_EVENT_KIND (event $CERTYARD_EVENT_ID): $subject"
fi

if [ "$CERTYARD_EVENT_KIND" = certificate.expiring ] && is_number "$days" &&
    is_number "$quiet_above" && [ "$days" -gt "$quiet_above" ]; then
    printf '{"suppress_email": true}\n' >"$CERTYARD_CONTEXT_OUT"
fi
