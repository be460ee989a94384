"""The README's rules tour against the running local stack (after scripts/seed_rules.py): a payment
the model approves, the same payment with an email on the block list (blocked by the rule), and a
trusted customer with that email (the allow list wins). Prints each decision and its rule reasons;
exits non-zero if any differs from the README. Usage: rules_tour.py API_URL KEY_FILE."""

import json
import sys
import time
import urllib.error
import urllib.request

api, key_file = sys.argv[1], sys.argv[2]
with open(key_file) as f:
    key = f.read().strip()
run = int(time.time())


def score(body):
    req = urllib.request.Request(api + "/v1/transactions", data=json.dumps(body).encode(), method="POST")
    req.add_header("Authorization", "Bearer " + key)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"rules tour: POST /v1/transactions answered {e.code}: {e.read().decode()[:500]}")


base = {"occurred_at": "2018-08-08T10:00:00Z", "amount": 1500, "currency": "EUR",
        "customer_id": "c-00042", "terminal_id": "t-00917"}
steps = [
    ("the model alone", {}, "approve", None),
    ("an email on the block list", {"email": "Fraudster@Example.com"}, "block", "blocked_email"),
    ("a trusted customer with that email", {"customer_id": "c-trusted", "email": "fraudster@example.com"},
     "approve", "trusted_customer"),
]
failed = False
for i, (what, changes, want, rule) in enumerate(steps):
    d = score({**base, "id": f"tour-{run}-{i}", **changes})
    rules = [r["rule_id"] for r in d["reasons"] if r["kind"] == "rule"]
    ok = d["decision"] == want and (rule is None and not rules or rule in rules)
    failed |= not ok
    print(f"{'ok ' if ok else 'BAD'} {what}: {d['decision']} (rule reasons {rules or 'none'}; "
          f"policy {d['policy_version']})", file=sys.stderr)
sys.exit(1 if failed else 0)
