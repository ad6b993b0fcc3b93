"""infra/, checked offline: every file parses, each environment's root is evaluated through its modules,
the invariants of each environment hold, and checkov passes with its justified skips.

No provider can be downloaded here, so Terraform itself never plans these roots in the tests. Instead
each root (infra/envs/<env>) is evaluated by `drugrepo_assets_tests.terraform` the way `terraform plan`
would for the values known before apply (a computed attribute is `UNKNOWN`, as in a plan). The
environments are then compared with what deployments/ and helm/ read: their settings, Helm values,
GPU asks and pod sizes.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from drugrepo_assets.lib.k8s import CPU_STEP_K8S_CONFIG, GPU_IMAGE_ENV, GPU_NODE_SELECTOR, GPU_OP_TAGS, GPU_TOLERATIONS
from drugrepo_assets_tests.terraform import UNKNOWN, Instance, ResourceValue, Unknown, has_unknown, parse
from drugrepo_assets_tests.test_deployments import read_env_file
from drugrepo_assets_tests.test_helm import values as helm_values

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
ENVS = ("dev", "staging", "prod")
CIDRS = {"dev": "10.0.0.0/16", "staging": "10.1.0.0/16", "prod": "10.2.0.0/16"}
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

# vCPUs, memory (GiB) and GPUs of the instance types the roots use: a node group must fit the pods it takes.
INSTANCE_CAPACITY = {
    "m7i.large": (2, 8, 0),
    "m7i.xlarge": (4, 16, 0),
    "g6.2xlarge": (8, 32, 1),
}
SIZE_STEPS = ("nano", "micro", "small", "medium", "large", "xlarge")
# Names an AWS service fixes the start of (EKS and RDS log groups): the environment's prefix follows.
SERVICE_PATHS = ("/aws/eks/", "/aws/rds/instance/")
NAME_ARGUMENTS = ("name", "name_prefix", "identifier", "node_group_name", "replication_group_id")
NAME_ARGUMENT_OF = {"aws_s3_bucket": "bucket"}  # elsewhere `bucket` names the bucket a setting belongs to


@cache
def root(env: str) -> Instance:
    """The root module of one environment, evaluated as `terraform plan` would before apply."""
    return Instance(INFRA / "envs" / env, {})


def platform_inputs(env: str) -> dict[str, Any]:
    return root(env).child("platform").inputs


def node_groups(env: str) -> dict[str, ResourceValue]:
    return dict(root(env).resources("aws_eks_node_group"))


def gpu_node_groups(env: str) -> dict[str, ResourceValue]:
    """The node groups GPU steps select (drugrepo_assets.lib.k8s.GPU_NODE_SELECTOR): the GPU pool."""
    return {
        address: group
        for address, group in node_groups(env).items()
        if GPU_NODE_SELECTOR.items() <= group.get("labels").items()
    }


def helm_asks_for_gpu_nodes(env: str) -> bool:
    """Whether helm/values-<env>.yaml runs GPU steps on their own image (drugrepo_assets.lib.k8s GPU op tags)."""
    if not (REPO / "helm" / f"values-{env}.yaml").exists():
        return False
    deployments = helm_values(env)["dagster-user-deployments"]["deployments"]
    return any(env_var["name"] == GPU_IMAGE_ENV for d in deployments for env_var in d.get("env", []))


def capacity(instance_type: str) -> tuple[int, int, int]:
    """vCPUs, memory (GiB) and GPUs of one instance type of INSTANCE_CAPACITY."""
    assert instance_type in INSTANCE_CAPACITY, f"add the vCPUs, memory and GPUs of {instance_type} to INSTANCE_CAPACITY"
    return INSTANCE_CAPACITY[instance_type]


def _quantity(text: str) -> float:
    """A Kubernetes CPU or memory quantity in cores or GiB."""
    units = {"m": 1e-3, "Mi": 1 / 1024, "Gi": 1.0}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _render_env() -> Any:
    spec = importlib.util.spec_from_file_location("render_env", INFRA / "render_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_env = _render_env()


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def test_every_terraform_file_parses() -> None:
    files = sorted(INFRA.rglob("*.tf"))
    assert {path.parent.name for path in files} >= {"network", "cluster", "storage", "database", "cache", "identity"}
    assert {path.parent.name for path in files if path.parent.parent.name == "envs"} == set(ENVS)
    for path in files:
        assert parse(path), f"{path} holds no block"


def test_the_evaluator_follows_terraform() -> None:
    """The evaluator's answers on the network module, checked against what Terraform would compute."""
    network = Instance(
        INFRA / "modules" / "network",
        {
            "name": "n",
            "region": "r",
            "cidr": "10.9.0.0/16",
            "azs": ["a", "b", "c"],
            "enable_nat_gateway": True,
            "single_nat_gateway": True,
            "interface_endpoints": ["sts", "ecr.api"],
            "kms_key_arn": UNKNOWN,
            "log_retention_days": 1,
        },
    )
    subnets = dict(network.resources("aws_subnet"))
    assert subnets["aws_subnet.private[2]"].get("cidr_block") == "10.9.160.0/20"
    assert subnets["aws_subnet.public[1]"].get("tags") == {"Name": "n-public-b", "kubernetes.io/role/elb": "1"}
    assert network.local("nat_count") == 1
    assert len(dict(network.resources("aws_route"))) == 1 + 3
    endpoints = dict(network.resources("aws_vpc_endpoint"))
    assert sorted(endpoints) == [
        'aws_vpc_endpoint.interface["ecr.api"]',
        'aws_vpc_endpoint.interface["sts"]',
        "aws_vpc_endpoint.s3",
    ]
    assert endpoints['aws_vpc_endpoint.interface["sts"]'].get("service_name") == "com.amazonaws.r.sts"
    assert isinstance(subnets["aws_subnet.public[0]"].get("id"), Unknown)
    with pytest.raises(AssertionError, match="required variable name"):
        Instance(INFRA / "modules" / "network", {}).variable("name")


@pytest.mark.parametrize("env", ENVS)
def test_the_network_range_is_the_environments(env: str) -> None:
    (vpc,) = [value for _, value in root(env).resources("aws_vpc")]
    network = ipaddress.ip_network(vpc.get("cidr_block"))
    assert str(network) == CIDRS[env]
    subnets = [ipaddress.ip_network(value.get("cidr_block")) for _, value in root(env).resources("aws_subnet")]
    assert len(subnets) == 2 * len(platform_inputs(env)["azs"]) >= 4
    assert all(subnet.subnet_of(network) for subnet in subnets)
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])


def test_the_environments_networks_are_disjoint() -> None:
    networks = [ipaddress.ip_network(platform_inputs(env)["cidr"]) for env in ENVS]
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])


def _names(value: ResourceValue) -> list[str]:
    arguments = (*NAME_ARGUMENTS, NAME_ARGUMENT_OF.get(value.type, "name"))
    names = [value.get(arg) for arg in dict.fromkeys(arguments) if arg in value.block.attrs]
    tags = value.get("tags") if "tags" in value.block.attrs else {}
    return names + ([tags["Name"]] if "Name" in tags else [])


@pytest.mark.parametrize("env", ENVS)
def test_every_name_starts_with_the_environment(env: str) -> None:
    prefix = f"drugrepo-{env}"
    named_types = set()
    for address, value in root(env).resources():
        for name in _names(value):
            assert isinstance(name, str), f"{address}: name {name!r} not known before apply"
            bare = next((name[len(path) :] for path in SERVICE_PATHS if name.startswith(path)), name)
            assert bare == prefix or bare.startswith((f"{prefix}-", f"{prefix}/")), f"{address}: {name}"
            named_types.add(value.type)
    assert {
        "aws_vpc",
        "aws_subnet",
        "aws_eks_cluster",
        "aws_eks_node_group",
        "aws_s3_bucket",
        "aws_db_instance",
        "aws_elasticache_replication_group",
        "aws_iam_role",
        "aws_security_group",
    } <= named_types


@pytest.mark.parametrize("env", ENVS)
def test_nat_gateways_only_outside_dev(env: str) -> None:
    nat = [value for _, value in root(env).resources("aws_nat_gateway")]
    nat_routes = [value for _, value in root(env).resources("aws_route") if value.has("nat_gateway_id")]
    private_tables = [address for address, _ in root(env).resources("aws_route_table") if ".private[" in address]
    if env == "dev":
        assert platform_inputs(env)["enable_nat_gateway"] is False
        assert nat == [] and nat_routes == []
        # Without NAT the nodes pull images from ECR, assume their roles through STS and reach S3 privately.
        region = platform_inputs(env)["region"]
        names = {value.get("service_name") for _, value in root(env).resources("aws_vpc_endpoint")}
        assert {f"com.amazonaws.{region}.{service}" for service in ("ecr.api", "ecr.dkr", "sts", "ec2", "s3")} <= names
    else:
        assert platform_inputs(env)["enable_nat_gateway"] is True
        assert nat and len(nat_routes) == len(private_tables) == len(platform_inputs(env)["azs"])


@pytest.mark.parametrize("env", ENVS)
def test_a_gpu_pool_exactly_where_helm_runs_gpu_steps(env: str) -> None:
    gpu_groups = gpu_node_groups(env)
    assert platform_inputs(env)["enable_gpu_pool"] is helm_asks_for_gpu_nodes(env) is bool(gpu_groups)
    if env == "dev":
        assert not (REPO / "helm" / "values-dev.yaml").exists()
    for group in gpu_groups.values():
        assert group.nested("taint"), "a GPU node without a taint takes CPU pods"
        for taint in group.nested("taint"):
            effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute"}[taint.get("effect")]
            assert any(
                t["key"] == taint.get("key") and t["effect"] == effect and t["operator"] == "Exists"
                for t in GPU_TOLERATIONS
            ), taint.block.attrs
        limit = helm_values(env)["concurrency"]["pools"]["defaultLimit"]
        cpus, memory, gpus = capacity(group.get("instance_types")[0])
        assert group.nested("scaling_config")[0].get("max_size") * gpus >= limit  # every GPU step of the pool runs
        requests = GPU_OP_TAGS["dagster-k8s/config"]["container_config"]["resources"]["requests"]
        assert _quantity(requests["cpu"]) < cpus and _quantity(requests["memory"]) < memory
        assert int(requests["nvidia.com/gpu"]) <= gpus


@pytest.mark.parametrize("env", ENVS)
def test_cpu_nodes_fit_the_pods_and_keep_gpu_steps_off(env: str) -> None:
    api = next(yaml.safe_load_all((REPO / "deployments" / "k8s" / "api.yaml").read_text()))
    pod_requests = [
        CPU_STEP_K8S_CONFIG["container_config"]["resources"]["requests"],
        api["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"],
    ]
    cpu_groups = [group for address, group in node_groups(env).items() if address not in gpu_node_groups(env)]
    assert len(cpu_groups) == 1
    for group in cpu_groups:
        assert not group.nested("taint")  # every pod may land here
        cpus, memory, gpus = capacity(group.get("instance_types")[0])
        assert gpus == 0
        for requests in pod_requests:
            assert _quantity(requests["cpu"]) < cpus and _quantity(requests["memory"]) < memory


def test_each_root_has_its_own_state_backend() -> None:
    backends = {}
    for env in ENVS:
        (terraform,) = root(env).of("terraform")
        (backend,) = terraform.nested("backend")
        assert backend.labels == ("s3",)
        settings = {key: root(env).eval(value) for key, value in backend.attrs.items()}
        assert settings["bucket"].startswith(f"drugrepo-{env}-")
        assert settings["encrypt"] is True and settings["use_lockfile"] is True
        backends[env] = (settings["bucket"], settings["key"])
    assert len({bucket for bucket, _ in backends.values()}) == len({key for _, key in backends.values()}) == len(ENVS)


def _size_rank(instance_type: str) -> int:
    size = instance_type.rsplit(".", 1)[-1]
    if size in SIZE_STEPS:
        return SIZE_STEPS.index(size)
    return len(SIZE_STEPS) + int(size.removesuffix("xlarge"))


SIZES: dict[str, Callable[[dict[str, Any]], float]] = {
    "cpu node size": lambda p: _size_rank(p["cpu_pool"]["instance_type"]),
    "cpu nodes at most": lambda p: p["cpu_pool"]["max_size"],
    "database instance size": lambda p: _size_rank(p["database"]["instance_class"]),
    "database storage": lambda p: p["database"]["allocated_storage_gb"],
    "database backups": lambda p: p["database"]["backup_retention_days"],
    "cache node size": lambda p: _size_rank(p["cache"]["node_type"]),
    "cache nodes": lambda p: p["cache"]["num_nodes"],
    "log retention": lambda p: p["log_retention_days"],
}


@pytest.mark.parametrize("size", SIZES)
def test_sizes_grow_from_dev_to_prod(size: str) -> None:
    dev, staging, prod = (SIZES[size](platform_inputs(env)) for env in ENVS)
    assert dev < staging <= prod, (dev, staging, prod)


def test_only_prod_is_highly_available() -> None:
    database = {env: platform_inputs(env)["database"] for env in ENVS}
    assert [database[env]["multi_az"] for env in ENVS] == [False, False, True]
    assert [database[env]["deletion_protection"] for env in ENVS] == [False, True, True]
    assert platform_inputs("prod")["single_nat_gateway"] is False


@pytest.mark.parametrize("env", ENVS)
def test_each_root_forwards_the_platform_outputs(env: str) -> None:
    platform = root(env).child("platform")
    forwarded = {block.labels[0] for block in root(env).of("output")}
    assert forwarded <= {block.labels[0] for block in platform.of("output")}
    assert {"drugrepo_env", "helm_values", "service_account_roles"} <= forwarded
    for name in forwarded:
        assert root(env).output(name) == platform.output(name) or has_unknown(platform.output(name))


def _deployed(env: str) -> bool:
    return (REPO / "deployments" / env / "drugrepo.env").exists()


@pytest.mark.parametrize("env", [env for env in ENVS if _deployed(env)])
def test_the_env_file_takes_exactly_the_outputs(env: str) -> None:
    """deployments/<env>/drugrepo.env holds the `drugrepo_env` output as render_env.py's block, no other copy."""
    path = REPO / "deployments" / env / "drugrepo.env"
    block = render_env.read_block(path.read_text())
    outputs = root(env).output("drugrepo_env")
    assert block, f"{path} has no infra outputs block: run infra/render_env.py env-block --write {path}"
    assert sorted(block) == sorted(outputs)
    for key, value in outputs.items():
        assert block[key] == value if not isinstance(value, Unknown) else block[key], key
    settings = read_env_file(path)
    assert {key: settings[key] for key in block} == block  # each key once, in the block
    assert "AWS_ENDPOINT_URL_S3" not in settings  # the bucket is this environment's, on S3
    instance = yaml.safe_load((REPO / "deployments" / env / "dagster.yaml").read_text())
    from_env = {leaf["env"] for _, leaf in _env_sources(instance)}
    assert from_env - {"DAGSTER_PG_PASSWORD"} <= set(outputs)  # the password is the chart's secret


def _env_sources(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    """The `{env: NAME}` values of an instance config, with where they are."""
    if isinstance(tree, dict):
        if set(tree) == {"env"}:
            yield path, tree
        for key, value in tree.items():
            yield from _env_sources(value, (*path, key))


@pytest.mark.parametrize("env", [env for env in ENVS if (REPO / "helm" / f"values-{env}.yaml").exists()])
def test_the_helm_values_take_the_outputs(env: str) -> None:
    """Every value of the `helm_values` output overrides a key helm/values*.yaml sets; known ones agree."""
    chart = helm_values(env)
    leaves = dict(_leaves(root(env).output("helm_values")))
    assert ("serviceAccount", "annotations", "eks.amazonaws.com/role-arn") in leaves
    for path, value in leaves.items():
        current: Any = chart
        for key in path:
            assert isinstance(current, dict) and key in current, f"helm/values-{env}.yaml has no {'.'.join(path)}"
            current = current[key]
        if not isinstance(value, Unknown):
            assert current == value, path


@pytest.mark.parametrize("env", ENVS)
def test_service_accounts_assume_roles_without_keys(env: str) -> None:
    for module in sorted(INFRA.rglob("*.tf")):
        for block in parse(module):
            assert block.type != "resource" or block.labels[0] not in ("aws_iam_access_key", "aws_iam_user"), module
    identity = root(env).child("platform").child("identity")
    trusts = identity.resource("data", "aws_iam_policy_document", "trust")
    accounts = identity.variable("service_accounts")
    namespace = f"drugrepo-{env}"
    assert {accounts[key]["service_account"] for key in accounts} == {"dagster", "drugrepo-api", "mlflow"}
    for key, trust in trusts.items():
        (statement,) = trust.nested("statement")
        assert statement.get("actions") == ["sts:AssumeRoleWithWebIdentity"]
        subject = f"system:serviceaccount:{namespace}:{accounts[key]['service_account']}"
        assert {tuple(c.get("values")) for c in statement.nested("condition")} == {("sts.amazonaws.com",), (subject,)}
    if (REPO / "helm" / f"values-{env}.yaml").exists():
        chart = helm_values(env)
        assert chart["runLauncher"]["config"]["k8sRunLauncher"]["jobNamespace"] == namespace
        assert chart["global"]["serviceAccountName"] in {a["service_account"] for a in accounts.values()}


@pytest.mark.parametrize("env", ENVS)
def test_the_bucket_drops_incomplete_uploads(env: str) -> None:
    buckets = {value.get("bucket") for _, value in root(env).resources("aws_s3_bucket")}
    assert f"drugrepo-{env}" in buckets
    lifecycles = dict(root(env).resources("aws_s3_bucket_lifecycle_configuration"))
    assert len(lifecycles) == len(buckets)
    for address, lifecycle in lifecycles.items():
        aborts = [
            rule.nested("abort_incomplete_multipart_upload")[0].get("days_after_initiation")
            for rule in lifecycle.nested("rule")
            if rule.get("status") == "Enabled" and rule.has("abort_incomplete_multipart_upload")
        ]
        whole_bucket = [rule for rule in lifecycle.nested("rule") if rule.has("abort_incomplete_multipart_upload")]
        assert len(aborts) == 1 and 1 <= aborts[0] <= 7, address
        assert whole_bucket[0].nested("filter")[0].block.attrs == {}, address  # no prefix: every upload


SAMPLE_AFTER_APPLY = {
    "DAGSTER_PG_HOST": "drugrepo-staging-postgres.abc.us-east-1.rds.amazonaws.com",
    "DRUGREPO_REDIS_URL": "rediss://master.drugrepo-staging-redis.abc.use1.cache.amazonaws.com:6379/0",
}


def _terraform_output_json(env: str) -> dict[str, Any]:
    """What `terraform output -json` prints after apply, with sample values for the ones known only then."""
    values = {}
    for block in root(env).of("output"):
        value = root(env).output(block.labels[0])
        if block.labels[0] == "drugrepo_env":
            value = {k: SAMPLE_AFTER_APPLY[k] if isinstance(v, Unknown) else v for k, v in value.items()}
        values[block.labels[0]] = {"sensitive": False, "type": "object", "value": value}
    return json.loads(json.dumps(values, default=lambda _: "arn:aws:iam::123456789012:role/sample"))


def test_render_env_writes_the_block_in_place(tmp_path: Path) -> None:
    outputs = _terraform_output_json("staging")
    env_file = tmp_path / "drugrepo.env"
    env_file.write_text("# settings\nDRUGREPO_ENV=staging\n")
    script = [str(REPO / ".venv" / "bin" / "python"), str(INFRA / "render_env.py"), "env-block"]
    for _ in range(2):  # a second run replaces the block, it does not add one
        run = subprocess.run(
            [*script, "--write", str(env_file)], input=json.dumps(outputs), capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
    text = env_file.read_text()
    assert text.startswith("# settings\nDRUGREPO_ENV=staging\n" + render_env.BEGIN + "\n")
    assert text.count(render_env.BEGIN) == 1 and text.endswith(render_env.END + "\n")
    block = render_env.read_block(text)
    assert block["DRUGREPO_STORAGE_URI"] == "s3://drugrepo-staging/assets"
    assert block["DAGSTER_PG_HOST"] == SAMPLE_AFTER_APPLY["DAGSTER_PG_HOST"]
    assert read_env_file(env_file) == {"DRUGREPO_ENV": "staging", **block}
    with pytest.raises(ValueError, match="one-line string"):
        render_env.env_block({"drugrepo_env": {"value": {"A": ""}}})
    with pytest.raises(ValueError, match="exactly one"):
        render_env.replace_block(text + text, render_env.env_block(outputs))


def test_render_env_writes_the_helm_values() -> None:
    outputs = _terraform_output_json("prod")
    rendered = yaml.safe_load(render_env.helm_values(outputs))  # Helm reads JSON as YAML
    assert rendered["computeLogManager"]["config"]["s3ComputeLogManager"]["bucket"] == "drugrepo-prod"
    assert rendered["runLauncher"]["config"]["k8sRunLauncher"]["jobNamespace"] == "drugrepo-prod"
    with pytest.raises(KeyError, match="helm_values"):
        render_env.helm_values({})


def _checkov(env: str) -> subprocess.Popen[str]:
    command = [str(CHECKOV), "-d", str(INFRA / "envs" / env), "--framework", "terraform", "--skip-download"]
    return subprocess.Popen([*command, "--compact", "-o", "json"], stdout=subprocess.PIPE, text=True)


@cache
def checkov_failures() -> dict[str, set[tuple[str, str]]]:
    """(check, resource) of every failed checkov check, per environment root; the three scans run at once."""
    scans = {env: _checkov(env) for env in ENVS}
    failures = {}
    for env, scan in scans.items():
        out, _ = scan.communicate(timeout=600)
        report = json.loads(out)
        assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 100, report["summary"]
        failures[env] = {(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]}
    return failures


def test_checkov_passes_with_its_justified_skips() -> None:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make checkov` (checkov lives in its own venv)"
    skips = yaml.safe_load((INFRA / "checkov-skips.yaml").read_text())
    for skip in skips:
        assert len(skip["reason"].split()) >= 8, skip
        assert set(skip["envs"]) <= set(ENVS), skip
    for env in ENVS:
        accepted = {(s["check"], s["resource"]) for s in skips if env in s["envs"]}
        assert checkov_failures()[env] - accepted == set(), f"{env}: findings without a justified skip"
        assert accepted - checkov_failures()[env] == set(), f"{env}: skips for checks that pass"
