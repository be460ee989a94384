"""Seeds the local stack with an example of rules and lists, through the API as a fraud team would:
a block list of emails, an allow list of trusted customers, a block list of cards that review
resolutions fill, five rules (one of them shadow), and a
FIRST_MATCHED ruleset that is published and activated. Run by `make dev` and `make demo` once the
api answers. Usage: seed_rules.py API_URL KEY_FILE. Exits non-zero, naming the step, on any
non-2xx answer."""

import json
import sys
import urllib.error
import urllib.request

api, key_file = sys.argv[1], sys.argv[2]
with open(key_file) as f:
    key = f.read().strip()


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"seeding rules: {method} {path} answered {e.code}: {e.read().decode()[:500]}")


call("POST", "/v1/lists", {"name": "blocked_emails", "kind": "email",
                            "description": "Emails seen on confirmed fraud"})
call("POST", "/v1/lists/blocked_emails/entries", {"entries": [
    {"value": "fraudster@example.com", "note": "chargeback, seeded by make dev"},
    {"value": "mule@example.net", "note": "seeded by make dev"},
]})
call("POST", "/v1/lists", {"name": "trusted_customers", "kind": "customer_id",
                            "description": "Customers the fraud team vouched for"})
call("POST", "/v1/lists/trusted_customers/entries", {"entries": [
    {"value": "c-trusted", "note": "seeded by make dev"},
]})
call("POST", "/v1/lists", {"name": "blocked_cards", "kind": "customer_id",
                            "description": "Cards an analyst confirmed as fraud (review resolutions add to it)"})
rules = [
    {"id": "trusted_customer", "name": "Trusted customer",
     "description": "The customer is on the trusted list",
     "expression": 'in_list(tx.customer_id, "trusted_customers")', "action": "allow", "priority": 100},
    {"id": "blocked_email", "name": "Blocked email",
     "description": "The email is on the block list",
     "expression": 'has(tx.email) && in_list(tx.email, "blocked_emails")', "action": "block", "priority": 50},
    {"id": "blocked_card", "name": "Blocked card",
     "description": "The card is on the block list",
     "expression": 'in_list(tx.customer_id, "blocked_cards")', "action": "block", "priority": 60},
    {"id": "big_at_night", "name": "Large amount at night",
     "description": "Over 1,000.00 between midnight and 6 UTC",
     "expression": "tx.amount_major > 1000.0 && tx.hour < 6", "action": "review", "priority": 10},
    {"id": "new_terminal_big", "name": "Large amount at a quiet terminal (shadow)",
     "description": "Over 300.00 at a terminal with under 2 payments in 7 days",
     "expression": "tx.amount_major > 300.0 && features.terminal_tx_count_7d < 2.0",
     "action": "block", "mode": "shadow"},
]
for rule in rules:
    call("POST", "/v1/rules", rule)
ruleset = call("POST", "/v1/rulesets", {"mode": "FIRST_MATCHED", "description": "Seeded by make dev",
                                        "rules": [{"id": r["id"]} for r in rules]})
version = ruleset["version"]
call("POST", f"/v1/rulesets/{version}/publish")
call("POST", f"/v1/rulesets/{version}/activate")
print(f"ruleset {version} active: {len(rules)} rules, lists blocked_emails, blocked_cards and trusted_customers",
      file=sys.stderr)
