#!/usr/bin/env python3
"""Cold init of the api bootstrap: process start until its `ready` log line, model loaded from a file.

Usage: python3 scripts/cold_init.py BINARY MODEL [RUNS]

The runtime API address points at a closed port on 127.0.0.1, so after `ready` the process would only
poll for events; it is killed as soon as `ready` is seen. DynamoDB/S3 are not called during init.
Prints the median and p90 over RUNS (default 30) and the init time the process itself logged.
"""
import json, os, statistics, subprocess, sys, time

binary, model = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
env = dict(os.environ,
           AWS_LAMBDA_RUNTIME_API="127.0.0.1:9", AWS_LAMBDA_FUNCTION_NAME="api",
           AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
           AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
           AWS_ENDPOINT_URL="http://127.0.0.1:9", TABLE_NAME="verdict", MODEL_BUCKET="verdict-models",
           VERDICT_MODEL_PATH=model, VERDICT_CURSOR_KEY="cold-init-measurement-only-" + "0" * 32,
           RUST_LOG="info")
walls, logged = [], []
for _ in range(runs):
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if '"ready"' in line:
            walls.append((time.perf_counter() - t0) * 1000)
            try:
                logged.append(float(json.loads(line)["fields"]["cold_init_ms"]))
            except (ValueError, KeyError):
                pass
            break
    p.kill()
    p.wait()
if not walls:
    sys.exit("the binary never logged ready")
walls.sort()
print(f"cold init (spawn to ready, {runs} runs): median {statistics.median(walls):.1f} ms, "
      f"p90 {walls[int(0.9 * (len(walls) - 1))]:.1f} ms; self-reported median "
      f"{statistics.median(logged) if logged else float('nan'):.1f} ms")
