"""API smoke test of a deployment: /readyz answers 200 and one /v1/predict scores one pair with the served model.

Standard library only, so that a bare runner's python3 runs it:
``DRUGREPO_SMOKE_API_KEY=<one of DRUGREPO_API_KEYS> python3 .github/scripts/smoke_api.py http://127.0.0.1:8080``.
Connection errors are retried until ``--wait`` seconds have passed (a port-forward that is still starting);
any HTTP answer other than the expected one fails at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

KEY_VAR = "DRUGREPO_SMOKE_API_KEY"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUAQTEVKLTLKEQ"
"""A protein of the 25-letter alphabet (with a rare U) long enough to go through every layer of the model."""


class SmokeFailure(RuntimeError):
    """The deployment did not answer as a healthy API does."""


def _call(request: urllib.request.Request, deadline: float) -> tuple[int, Any]:
    """Status and JSON body of ``request``, retrying connection errors until ``deadline``."""
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise SmokeFailure(f"{request.full_url}: no answer ({exc})") from None
            time.sleep(2)


def smoke(url: str, key: str, wait: float) -> dict[str, Any]:
    """Check /readyz and one /v1/predict at ``url``; the prediction's summary, or `SmokeFailure`."""
    deadline = time.monotonic() + wait
    status, body = _call(urllib.request.Request(f"{url}/readyz"), deadline)
    if status != 200:
        raise SmokeFailure(f"/readyz answered {status}: {body}")
    payload = json.dumps({"pairs": [{"smiles": ASPIRIN, "protein": PROTEIN}]}).encode()
    request = urllib.request.Request(
        f"{url}/v1/predict",
        data=payload,
        method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    status, body = _call(request, deadline)
    if status != 200:
        raise SmokeFailure(f"/v1/predict answered {status}: {body}")
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != 1:
        raise SmokeFailure(f"/v1/predict: expected one prediction, got {body}")
    score = predictions[0].get("score")
    if not isinstance(score, float) or not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise SmokeFailure(f"/v1/predict: score {score!r} is not a probability")
    if not body.get("model_version") or not body.get("checkpoint_id"):
        raise SmokeFailure(f"/v1/predict: no model_version or checkpoint_id in {body}")
    return {"model_version": body["model_version"], "checkpoint_id": body["checkpoint_id"], "score": score}


def main(argv: list[str] | None = None) -> int:
    """Run the smoke test against the URL given; 0 when the API is healthy, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the API, e.g. http://127.0.0.1:8080")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the API to accept connections")
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_VAR, "")
    if not key:
        print(f"{KEY_VAR} is not set: one of the environment's DRUGREPO_API_KEYS", file=sys.stderr)
        return 1
    try:
        summary = smoke(args.url.rstrip("/"), key, args.wait)
    except SmokeFailure as exc:
        print(f"API smoke test failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
