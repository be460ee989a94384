"""The README's review tour against the running local stack (after scripts/seed_rules.py): a payment
the `big_at_night` rule sends to review opens a review item; an analyst claims it and resolves it as
fraud, which labels the transaction and adds the card to the `blocked_cards` list; the card's next
payment is blocked by the `blocked_card` rule. Prints each step; exits non-zero, naming the step, if
any answer differs from the README. Usage: review_tour.py API_URL KEY_FILE."""

import json
import sys
import time
import urllib.error
import urllib.request

api, key_file = sys.argv[1], sys.argv[2]
with open(key_file) as f:
    key = f.read().strip()
run = int(time.time())
card = f"c-tour-{run}"


def call(method, path, body=None, want=200):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, answer = r.status, json.load(r)
    except urllib.error.HTTPError as e:
        status, answer = e.code, e.read().decode()[:500]
    if status != want:
        sys.exit(f"review tour: {method} {path} answered {status} (wanted {want}): {answer}")
    return answer


def step(what, ok, detail):
    print(f"{'ok ' if ok else 'BAD'} {what}: {detail}", file=sys.stderr)
    if not ok:
        sys.exit(f"review tour: {what}: {detail}")


queue = call("GET", "/v1/reviews?status=open&sort=risk&limit=100")
print(f"    the queue holds {len(queue['items'])} open review item(s) on its first page, highest risk first",
      file=sys.stderr)

payment = {"id": f"review-tour-{run}-1", "occurred_at": "2018-08-08T03:00:00Z", "amount": 150000,
           "currency": "EUR", "customer_id": card, "terminal_id": "t-00917"}
d = call("POST", "/v1/transactions", payment)
step("a large payment at 3 am", d["decision"] == "review", f"{d['decision']} (policy {d['policy_version']})")

item = call("GET", f"/v1/reviews/{payment['id']}")
step("its review item", item["status"] == "open", f"status {item['status']}")

claim = call("POST", f"/v1/reviews/{payment['id']}/claim", {})
step("claimed", bool(claim.get("claim")), f"held until {(claim.get('claim') or {}).get('expires_at')}")

resolved = call("POST", f"/v1/reviews/{payment['id']}/resolve",
                {"outcome": "block", "label": "fraud", "note": "cardholder confirmed the card was stolen",
                 "add_to_list": ["blocked_cards"]})
step("resolved as fraud", resolved["status"] == "resolved",
     f"outcome {resolved['resolution']['outcome']}, lists {resolved['resolution'].get('lists_added')}")

call("POST", f"/v1/reviews/{payment['id']}/resolve", {"outcome": "block", "label": "fraud"}, want=409)
step("resolving twice", True, "409")

tx = call("GET", f"/v1/transactions/{payment['id']}")
label = tx.get("label") or {}
step("the transaction's label", label.get("value") == "fraud", f"{label.get('value')} from {label.get('source')}")

entries = call("GET", "/v1/lists/blocked_cards/entries?limit=100")
step("the card on blocked_cards", any(e["value"] == card for e in entries["items"]), card)

small = {**payment, "id": f"review-tour-{run}-2", "occurred_at": "2018-08-08T12:00:00Z", "amount": 1200}
d = call("POST", "/v1/transactions", small)
rules = [r["rule_id"] for r in d["reasons"] if r["kind"] == "rule"]
step("the card's next payment", d["decision"] == "block" and "blocked_card" in rules,
     f"{d['decision']} (rule reasons {rules or 'none'})")
print(payment["id"])
