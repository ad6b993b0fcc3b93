"""Smoke materialisation of a deployment: launch one partition of a job through the Dagster webserver's GraphQL API
and wait for the run to succeed.

The run goes the deployment's whole way: the instance's run queue and run launcher (a Kubernetes Job per run),
the executor (a pod per step), the code location's image and the environment's storage. Needs
``dagster-graphql`` (the version of the deployed Dagster); the deploy workflows install it::

    python smoke_materialize.py --url http://127.0.0.1:3000 --location drugrepo-assets --job ingest_job --partition human
"""

from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import urlsplit

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError, ReloadRepositoryLocationStatus

PARTITION_TAG = "dagster/partition"
DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class SmokeFailure(RuntimeError):
    """The deployment could not run the job, or the run did not succeed."""


def connect(url: str, location: str, deadline: float) -> DagsterGraphQLClient:
    """A client of the webserver at ``url`` once it answers and has reloaded ``location`` (the new image's code)."""
    parts = urlsplit(url)
    while True:
        try:
            client = DagsterGraphQLClient(parts.hostname or "127.0.0.1", port_number=parts.port, timeout=60)
            reload = client.reload_repository_location(location)
        except Exception as exc:  # the webserver is not reachable yet: any transport error
            if time.monotonic() > deadline:
                raise SmokeFailure(f"{url}: the webserver does not answer ({exc})") from None
            time.sleep(5)
            continue
        if reload.status != ReloadRepositoryLocationStatus.SUCCESS:
            raise SmokeFailure(f"code location {location} did not load: {reload.message}")
        return client


def materialize(client: DagsterGraphQLClient, location: str, job: str, partition: str, deadline: float) -> str:
    """Launch ``job`` for ``partition`` in ``location`` and wait for its run; the run id once it succeeded."""
    try:
        run_id = client.submit_job_execution(job, repository_location_name=location, tags={PARTITION_TAG: partition})
    except DagsterGraphQLClientError as exc:
        raise SmokeFailure(f"{location}/{job} was not launched: {exc}") from None
    print(f"launched run {run_id} of {location}/{job} [{partition}]", flush=True)
    status = client.get_run_status(run_id)
    while status not in DONE:
        if time.monotonic() > deadline:
            raise SmokeFailure(f"run {run_id} is still {status.value}")
        time.sleep(10)
        status = client.get_run_status(run_id)
    if status != DagsterRunStatus.SUCCESS:
        raise SmokeFailure(f"run {run_id} ended {status.value}: see its logs in the Dagster UI")
    return run_id


def main(argv: list[str] | None = None) -> int:
    """Launch and wait; 0 when the run succeeded, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the webserver, e.g. http://127.0.0.1:3000 (a port-forward)")
    parser.add_argument("--location", required=True, help="code location name (the Helm user deployment's name)")
    parser.add_argument("--job", required=True)
    parser.add_argument("--partition", required=True)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole smoke run")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    try:
        client = connect(args.url, args.location, deadline)
        run_id = materialize(client, args.location, args.job, args.partition, deadline)
    except SmokeFailure as exc:
        print(f"smoke materialisation failed: {exc}", file=sys.stderr)
        return 1
    print(f"run {run_id} succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
