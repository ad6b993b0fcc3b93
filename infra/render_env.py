"""Turn `terraform output -json` of an environment root (infra/envs/<env>) into what deployments/ and helm/ read.

The settings that come from the infrastructure (bucket URIs, the database and cache endpoints, the
region) are never typed by hand: this script writes them, from the root's `drugrepo_env` output, as a
marked block of deployments/<env>/drugrepo.env, and writes the root's `helm_values` output as a values
file layered over helm/values-<env>.yaml. Standard library only: it runs with any Python 3.11.

    terraform -chdir=infra/envs/staging output -json > /tmp/staging.json
    python infra/render_env.py env-block --write deployments/staging/drugrepo.env < /tmp/staging.json
    python infra/render_env.py helm-values < /tmp/staging.json > /tmp/values-infra.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BEGIN = "# BEGIN infra outputs: written by infra/render_env.py from `terraform output -json`; change infra/, not these lines"
END = "# END infra outputs"
ENV_OUTPUT = "drugrepo_env"
HELM_OUTPUT = "helm_values"


def output_value(outputs: Mapping[str, Any], name: str) -> Any:
    """The value of one output of `terraform output -json` (which wraps each as {"value": ..., "type": ...})."""
    if name not in outputs:
        raise KeyError(f"terraform output has no {name!r} (outputs: {sorted(outputs)})")
    return outputs[name]["value"]


def env_block(outputs: Mapping[str, Any]) -> str:
    """The marked KEY=VALUE block of drugrepo.env, keys sorted, from the `drugrepo_env` output."""
    settings = output_value(outputs, ENV_OUTPUT)
    for key, value in settings.items():
        if not isinstance(value, str) or "\n" in value or not value:
            raise ValueError(f"{ENV_OUTPUT}.{key} is not a one-line string: {value!r}")
    lines = [BEGIN, *(f"{key}={settings[key]}" for key in sorted(settings)), END]
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` (an env file) with its marked block replaced by ``block``, or ``block`` appended when it has none."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == END]
    if not starts and not ends:
        return text + ("" if not text or text.endswith("\n") else "\n") + block
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError("the env file must hold exactly one BEGIN/END infra outputs block")
    return "".join(lines[: starts[0]]) + block + "".join(lines[ends[0] + 1 :])


def read_block(text: str) -> dict[str, str]:
    """The KEY=VALUE pairs inside the marked block of an env file (empty when it has none)."""
    lines = text.splitlines()
    if BEGIN not in lines:
        return {}
    inside = lines[lines.index(BEGIN) + 1 : lines.index(END)]
    pairs = [line.split("=", 1) for line in inside if line and not line.startswith("#")]
    return dict(pairs)


def helm_values(outputs: Mapping[str, Any]) -> str:
    """The `helm_values` output as a values file (JSON, which Helm reads as YAML), for `helm -f`."""
    return json.dumps(output_value(outputs, HELM_OUTPUT), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Read `terraform output -json` on stdin; print the env block or the Helm values, or rewrite an env file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["env-block", "helm-values"])
    parser.add_argument("--write", type=Path, help="env-block: replace the block of this drugrepo.env in place")
    args = parser.parse_args(argv)
    outputs = json.load(sys.stdin)
    if args.what == "helm-values":
        sys.stdout.write(helm_values(outputs))
    elif args.write is not None:
        args.write.write_text(replace_block(args.write.read_text(), env_block(outputs)))
    else:
        sys.stdout.write(env_block(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
