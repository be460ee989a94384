#!/usr/bin/env python3
"""Builds the import-parity fixtures: a LightGBM and an XGBoost model trained in Python, rows to
score, and each library's own predictions for those rows.

How to run (from the repository root):

    python3 -m venv scripts/.venv
    scripts/.venv/bin/pip install -r scripts/requirements-fixtures.txt
    scripts/.venv/bin/python scripts/make_fixtures.py

It writes, to fixtures/ (overwriting):
    lightgbm_model.txt        LightGBM text model, binary, 60 trees, num_leaves 15
    xgboost_model.json        XGBoost JSON model, binary:logistic, 60 trees, max_depth 4
    parity_features.csv       rows to score; columns are Verdict's 15 feature names, floats via repr
    parity_predictions.csv    lightgbm_prob, xgboost_prob per row, from each library's predict

Everything is seeded and single-threaded, so a rerun with the pinned versions gives the same
files. shared/tests/import_parity.rs checks that Verdict scores every row within 1e-6 of these.
The data is synthetic and only shaped like fraud data (a few informative columns, integers,
zeros, some NaN); it is not the handbook simulator.
"""

import csv
import json
import math
from pathlib import Path

import lightgbm as lgb
import numpy as np
import xgboost as xgb

# Verdict's feature order (shared/src/features.rs FEATURE_NAMES).
NAMES = [
    "amount",
    "during_weekend",
    "during_night",
    "customer_tx_count_1d",
    "customer_mean_amount_1d",
    "customer_tx_count_7d",
    "customer_mean_amount_7d",
    "customer_tx_count_30d",
    "customer_mean_amount_30d",
    "terminal_tx_count_1d",
    "terminal_risk_1d",
    "terminal_tx_count_7d",
    "terminal_risk_7d",
    "terminal_tx_count_30d",
    "terminal_risk_30d",
]
COL = {n: i for i, n in enumerate(NAMES)}
SEED = 20180401
OUT = Path(__file__).resolve().parent.parent / "fixtures"


def synthesize(rng, n):
    """Rows shaped like the handbook's features, and labels from its three fraud scenarios."""
    x = np.zeros((n, len(NAMES)))
    cust_mean = rng.uniform(5, 100, n)
    amount = np.abs(rng.normal(cust_mean, cust_mean / 2))
    # Scenario 3: a compromised customer's amount is multiplied by 5.
    stolen = rng.random(n) < 0.02
    amount[stolen] *= 5
    amount = np.round(amount, 2)
    # Some whole amounts, so thresholds fall exactly on integers.
    whole = rng.random(n) < 0.15
    amount[whole] = np.round(amount[whole])
    x[:, COL["amount"]] = amount
    x[:, COL["during_weekend"]] = rng.random(n) < 2 / 7
    x[:, COL["during_night"]] = rng.random(n) < 0.12
    per_day = rng.uniform(0, 4, n)
    for days in (1, 7, 30):
        count = rng.poisson(per_day * days) + 1  # the window includes the current transaction
        x[:, COL[f"customer_tx_count_{days}d"]] = count
        mean = np.round(cust_mean + rng.normal(0, cust_mean / (2 * np.sqrt(count))), 2)
        mean = np.where(stolen & (days == 1), (mean * (count - 1) + amount) / count, mean)
        x[:, COL[f"customer_mean_amount_{days}d"]] = np.maximum(mean, 0)
    # Scenario 2: compromised terminals have a high recent fraud rate.
    bad_terminal = rng.random(n) < 0.03
    for days in (1, 7, 30):
        count = rng.poisson(2.5 * days, n)
        rate = np.where(bad_terminal, rng.uniform(0.2, 0.8, n), 0.003)
        frauds = rng.binomial(count, rate)
        x[:, COL[f"terminal_tx_count_{days}d"]] = count
        x[:, COL[f"terminal_risk_{days}d"]] = np.where(count > 0, frauds / np.maximum(count, 1), 0.0)
    # A new customer's 1-day mean is sometimes unknown: gives the models real missing values.
    x[rng.random(n) < 0.03, COL["customer_mean_amount_1d"]] = np.nan

    logit = (
        -5.0
        + 6.0 * (amount > 220)
        + 4.0 * stolen
        + 5.0 * x[:, COL["terminal_risk_7d"]]
        + 3.0 * x[:, COL["terminal_risk_30d"]]
        + 0.6 * x[:, COL["during_night"]]
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    return x, y


def lightgbm_thresholds(path):
    """(column, threshold) of every LightGBM split, read back from the saved text."""
    out, feats = [], None
    for line in path.read_text().splitlines():
        if line.startswith("split_feature="):
            feats = [int(v) for v in line.split("=", 1)[1].split()]
        elif line.startswith("threshold=") and feats is not None:
            out += zip(feats, (float(v) for v in line.split("=", 1)[1].split()))
    return sorted(set(out))


def xgboost_thresholds(path):
    """(column, threshold) of every XGBoost split, as the f32 value XGBoost compares with."""
    model = json.loads(path.read_text())
    out = set()
    for t in model["learner"]["gradient_booster"]["model"]["trees"]:
        for left, feat, cond in zip(t["left_children"], t["split_indices"], t["split_conditions"]):
            if left != -1:
                out.add((feat, float(np.float32(cond))))
    return sorted(out)


def main():
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(SEED)
    x_train, y_train = synthesize(rng, 20000)
    x_test, _ = synthesize(rng, 250)
    print(f"train rows {len(y_train)}, fraud rate {y_train.mean():.4f}")

    lgb_path = OUT / "lightgbm_model.txt"
    booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 15,
            "learning_rate": 0.1,
            "min_data_in_leaf": 20,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": SEED,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbose": -1,
        },
        lgb.Dataset(x_train, y_train, feature_name=NAMES),
        num_boost_round=60,
    )
    booster.save_model(str(lgb_path))

    xgb_path = OUT / "xgboost_model.json"
    bst = xgb.train(
        {
            "objective": "binary:logistic",
            "max_depth": 4,
            "eta": 0.1,
            "subsample": 0.8,
            "colsample_bytree": 0.9,
            "tree_method": "hist",
            "seed": SEED,
            "nthread": 1,
        },
        xgb.DMatrix(x_train, y_train, feature_names=NAMES),
        num_boost_round=60,
    )
    bst.save_model(str(xgb_path))

    # Rows that sit exactly on split thresholds tell <= (LightGBM) from < (XGBoost, in f32).
    rows = [r for r in x_test]
    pick = np.random.default_rng(SEED + 1)
    for thresholds in (lightgbm_thresholds(lgb_path), xgboost_thresholds(xgb_path)):
        for k in pick.choice(len(thresholds), size=min(60, len(thresholds)), replace=False):
            col, thr = thresholds[k]
            row = x_test[pick.integers(len(x_test))].copy()
            row[col] = thr
            rows.append(row)
    # Missing values in any column: NaN follows default_left, or is read as 0 (LightGBM None).
    for _ in range(20):
        row = x_test[pick.integers(len(x_test))].copy()
        row[pick.choice(len(NAMES), size=pick.integers(1, 4), replace=False)] = np.nan
        rows.append(row)
    rows = np.array(rows)

    # Predict with the models read back from disk: the files are what Verdict imports.
    lgb_prob = lgb.Booster(model_file=str(lgb_path)).predict(rows)
    assert np.allclose(lgb_prob, booster.predict(rows), rtol=0, atol=1e-12)
    loaded = xgb.Booster(model_file=str(xgb_path))
    xgb_prob = loaded.predict(xgb.DMatrix(rows, feature_names=NAMES))
    assert np.array_equal(xgb_prob, bst.predict(xgb.DMatrix(rows, feature_names=NAMES)))

    with open(OUT / "parity_features.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(NAMES)
        for r in rows:
            w.writerow([repr(float(v)) for v in r])
    with open(OUT / "parity_predictions.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["lightgbm_prob", "xgboost_prob"])
        for a, b in zip(lgb_prob, xgb_prob):
            w.writerow([repr(float(a)), repr(float(b))])
    nan_rows = int(np.isnan(rows).any(axis=1).sum())
    print(f"wrote {len(rows)} parity rows ({nan_rows} with NaN) to {OUT}")
    for p in sorted(OUT.iterdir()):
        print(f"  {p.name}: {p.stat().st_size} bytes")
    assert all(math.isfinite(p) for p in lgb_prob) and all(math.isfinite(float(p)) for p in xgb_prob)


if __name__ == "__main__":
    main()
