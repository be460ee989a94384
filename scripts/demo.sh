#!/usr/bin/env bash
# `make demo`: the same stack as `make dev`, non-interactively; then scores the simulation's last
# DEMO_COUNT transactions (1000) over HTTP after the history before them was loaded into the
# aggregates, prints the decision mix (also against the simulator's labels) and latency
# percentiles, and takes everything down. Exits non-zero if any step or any request failed.
#
# Environment: as scripts/dev.sh, plus DEMO_COUNT (1000) and DEMO_MAX_SECONDS (300).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

# --ignore-changes: nothing is edited during a demo, so no rebuilds.
setup_stack --ignore-changes

say "scoring the last $DEMO_COUNT simulated transactions over HTTP"
status=0
"$VERDICT" load --url "$API_URL" --key-file "$KEY_FILE" --data "$SIM_FILE" \
    --count "$DEMO_COUNT" --max-seconds "${DEMO_MAX_SECONDS:-300}" || status=$?
say "the README's rules tour: a rule blocks what the model approved, an allow list overrides it"
"$VENV/bin/python" "$ROOT/scripts/rules_tour.py" "$API_URL" "$KEY_FILE" || status=$?
say "the README's review tour: review item → claim → resolve as fraud → label and block list → the card's next payment is blocked"
tour_tx="$("$VENV/bin/python" "$ROOT/scripts/review_tour.py" "$API_URL" "$KEY_FILE")" || status=$?
if [[ -n "${tour_tx:-}" ]]; then
    say "what the stream poller published for the tour (make events)"
    check_tour_events "$tour_tx" || status=$?
fi
cat >&2 <<'NOTE'
    The customers' and terminals' aggregates hold the simulated history before these transactions,
    with the fraud labels of the days at least 7 days before (the labels known by then). The
    latency is the local stack's (debug build, cargo lambda watch, moto in Python serving one
    request at a time).
NOTE
if ((status != 0)); then
    warn "the demo failed (exit $status); the function's log follows"
    tail -n 30 "$LOCAL/watch.log" >&2
fi
exit "$status"
