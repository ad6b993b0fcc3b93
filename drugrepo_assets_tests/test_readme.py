"""The README's shell examples, run as written: every ```sh block in order, in one fresh folder.

The conventions, stated in the README above its first example: a ```sh block runs here with the
venv's bin first on PATH and must exit 0; a ```text block is not run (it needs a cluster, an account
or a running UI, or would recurse, like `make test`); every other fence names its language. A block
that starts the API (`drugrepo serve`) runs in the background until the end, on a free port written
for ``8000``, and the next block runs once /readyz answers. A comment line ``# {...}`` documents the
JSON answer of the command above it: the answer must have the same keys and value types.
`drugrepo rollback` runs against a live `mlflow server` whose registry holds two versions of
``drugban-human``, promoted one after the other (as `registered_model` does with `promote_directly`, or `champion_challenger` on a win).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from drugrepo_assets.screening.answers import ANSWER_COLUMNS
from drugrepo_assets.screening.driver import DOMAIN_COLUMNS
from drugrepo_assets.serving.registry import alias_version, checkpoint_source, promote, register_checkpoint
from drugrepo_assets_tests.api.servers import running_mlflow
from drugrepo_assets_tests.processes import free_port, wait_until

pytestmark = pytest.mark.slow(90)

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_SHELL = {"text", "yaml"}
BLOCK_TIMEOUT_SECONDS = 900
MODEL = "drugban-human"


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: its language, the line of its opening fence and its text."""

    language: str
    line: int
    text: str

    @property
    def starts_server(self) -> bool:
        return re.search(r"\bdrugrepo serve\b", self.text) is not None

    def documented_answers(self) -> list[Any]:
        """The JSON values of its ``# {...}`` / ``# [...]`` comment lines, in order."""
        return [json.loads(m) for m in re.findall(r"^\s*# (\{.*\}|\[.*\])\s*$", self.text, re.M)]


@dataclass(frozen=True)
class Ran:
    """A block that ran to completion: its exit status and output."""

    block: Block
    returncode: int
    stdout: str
    stderr: str


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown``, in order."""
    return [
        Block(m.group(1).strip(), markdown.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(markdown)
    ]


def shape(value: Any) -> Any:
    """The keys and value types of a JSON value: a list's shape is its first element's."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, int | float) else type(value).__name__


def json_values(text: str) -> list[Any]:
    """The JSON values written one after the other in ``text`` (curl prints answers without newlines)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def _environment(tracking_uri: str) -> dict[str, str]:
    """The user's environment without project settings, the venv first on PATH, the test's MLflow server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRUGREPO_", "MLFLOW_", "DAGSTER_"))}
    return env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "MLFLOW_TRACKING_URI": tracking_uri}


def _on_port(text: str, port: int) -> str:
    return text.replace("localhost:8000", f"localhost:{port}").replace("--port 8000", f"--port {port}")


def _registry_with_two_promotions(tracking_uri: str, checkpoint: Path) -> None:
    """``drugban-human`` versions 1 and 2, each promoted to ``champion`` in turn (as `registered_model` does with
    `promote_directly`, or `champion_challenger` on a win)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("readme")
    for _ in range(2):
        run_id = client.create_run(experiment).info.run_id
        source = checkpoint_source(client, run_id, checkpoint)
        version, _created = register_checkpoint(client, MODEL, source, run_id, tags={})
        promote(client, MODEL, "champion", str(version.version))
    assert alias_version(client, MODEL, "champion") == "2"


@dataclass
class Session:
    """Every shell block run in README order in ``folder``; the servers it started, stopped at the end."""

    folder: Path
    env: dict[str, str]
    port: int
    servers: list[subprocess.Popen]
    ran: list[Ran]

    def run(self, block: Block) -> None:
        text = _on_port(block.text, self.port)
        if block.starts_server:
            self._start(block, text)
            return
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", text],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            pytest.fail(f"README.md:{block.line} ran past {BLOCK_TIMEOUT_SECONDS} s:\n{block.text}", pytrace=False)
        self.ran.append(Ran(block, process.returncode, stdout, stderr))
        assert process.returncode == 0, (
            f"README.md:{block.line} exited {process.returncode}:\n{block.text}\n"
            f"stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
        )

    def _start(self, block: Block, text: str) -> None:
        assert f"--port {self.port}" in text, f"README.md:{block.line}: a server block names its port (--port 8000)"
        log = self.folder / f"server-{block.line}.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                ["bash", "-c", text],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append(server)
        url = f"http://127.0.0.1:{self.port}/readyz"
        wait_until(server, lambda: _answers(url), log, f"README.md:{block.line}", timeout=180)

    def stop(self) -> None:
        for server in self.servers:
            _stop_group(server)

    def output_of(self, command: str) -> Ran:
        (found,) = [r for r in self.ran if command in r.block.text]
        return found


def _stop_group(process: subprocess.Popen) -> None:
    """Terminate the process group ``process`` leads (the block's shell and what it started), then kill it."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def readme(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Session]:
    """The README's shell blocks run in order, against a live MLflow server and the API they start."""
    base = tmp_path_factory.mktemp("readme")
    folder = base / "work"
    folder.mkdir()
    with running_mlflow(base / "mlflow") as tracking_uri:
        _registry_with_two_promotions(tracking_uri, golden_dir / "model_state.pt")
        session = Session(folder, _environment(tracking_uri), free_port(), [], [])
        try:
            for block in fenced_blocks(README.read_text()):
                if block.language == "sh":
                    session.run(block)
            yield session
        finally:
            session.stop()


def test_every_fence_names_its_language_and_shell_is_sh_or_text() -> None:
    blocks = fenced_blocks(README.read_text())
    unnamed = [b.line for b in blocks if not b.language]
    assert not unnamed, f"fences without a language at README.md lines {unnamed}: say sh (run) or text (not run)"
    assert {b.language for b in blocks} <= {"sh", *NOT_SHELL}
    assert sum(b.language == "sh" for b in blocks) >= 5


@pytest.mark.services
def test_shell_blocks_run_and_answers_have_the_documented_shape(readme: Session) -> None:
    documented = [r for r in readme.ran if r.block.documented_answers()]
    assert documented, "the README documents at least one JSON answer"
    for ran in documented:
        answers = json_values(ran.stdout)
        expected = ran.block.documented_answers()
        assert len(answers) == len(expected), f"README.md:{ran.block.line}: {ran.stdout[:2000]}"
        for got, want in zip(answers, expected):
            assert shape(got) == shape(want), f"README.md:{ran.block.line}: {json.dumps(got)[:2000]}"


@pytest.mark.services
def test_the_cli_chain_writes_what_the_readme_says(readme: Session) -> None:
    folder = readme.folder
    info = readme.output_of("drugrepo info").stdout
    assert re.search(r"^device: ", info, re.M) and re.search(r"^screening kernel: ", info, re.M), info

    assert (folder / "runs/human/best.pt").is_file() and (folder / "runs/human/metrics.json").is_file()

    valid = pd.read_parquet(folder / "v/valid.parquet")
    scored = pd.read_csv(folder / "scored.csv")
    assert len(scored) == len(valid) > 0
    assert {"logit", "score", "error"} <= set(scored.columns)
    assert scored["logit"].notna().all() and scored["score"].between(0, 1).all()

    screen = readme.output_of("--out screen-1").block.text
    top, per_drug = (int(re.search(rf"{option} (\d+)", screen).group(1)) for option in ("--top", "--top-per-drug"))
    columns = ("repurposing_rank", *ANSWER_COLUMNS, *DOMAIN_COLUMNS, "checkpoint_id")
    library, targets = pd.read_csv(folder / "library.csv"), pd.read_csv(folder / "targets.csv")
    by_target = pd.read_csv(folder / "screen-1/top.csv")
    assert tuple(by_target.columns) == columns[1:] and by_target["rank_in_target"].min() == 1
    assert by_target.groupby("target_id").size().eq(min(top, len(library))).all()
    assert set(by_target["target_id"]) == set(targets["id"])
    by_drug = pd.read_csv(folder / "screen-1/top_per_drug.csv")
    refused = pd.read_csv(folder / "screen-1/rejected.csv")
    scored = len(library) - int((refused["kind"] == "molecule").sum())  # a library refuses lone ions and atoms
    assert by_drug.groupby("drug_id").size().eq(per_drug).all() and len(by_drug) == per_drug * scored
    repurposing = pd.read_csv(folder / "screen-1/repurposing.csv")
    assert tuple(repurposing.columns) == columns
    assert repurposing["repurposing_z"].is_monotonic_decreasing
    known = set(pd.read_csv(folder / "known.csv").astype(str).itertuples(index=False, name=None))
    flagged = [
        (t, d) in known for t, d in zip(repurposing["target_id"].astype(str), repurposing["drug_id"].astype(str))
    ]
    assert repurposing["known"].tolist() == flagged
    assert by_target["drug_similarity"].between(0, 1).all()  # the trained checkpoint carries its domain
    for name in ("enrichment.csv", "targets.png", "drugs.png", "matrix.png"):
        assert (folder / "screen-1" / name).is_file(), name
    drug = readme.output_of("--out drug-1")
    one = pd.read_csv(folder / "drug-1/top_per_drug.csv")
    assert len(one) == 10 and one["rank_in_drug"].tolist() == list(range(1, 11))
    assert one["z_target"].isna().all() and one["z_drug"].is_monotonic_decreasing
    assert f"target terms: {len(targets)} read from terms/" in drug.stderr  # nothing encoded again
    assert ", 0 computed" in drug.stderr


@pytest.mark.services
def test_rollback_moves_the_champion_back_on_the_live_registry(readme: Session) -> None:
    from mlflow import MlflowClient

    assert f"{MODEL}@champion: version 2 -> 1" in readme.output_of("drugrepo rollback").stdout
    client = MlflowClient(tracking_uri=readme.env["MLFLOW_TRACKING_URI"])
    assert alias_version(client, MODEL, "champion") == "1"


def test_shape_and_json_values_read_what_curl_prints() -> None:
    assert json_values('{"a": [{"b": 1.5}]}{"c": null}\n') == [{"a": [{"b": 1.5}]}, {"c": None}]
    assert shape({"a": [{"b": 1}, {"b": 2}], "c": "x", "d": True}) == {"a": [{"b": "number"}], "c": "str", "d": "bool"}
    assert shape({"a": 1}) != shape({"a": "1"}) and shape({"a": 1}) != shape({"b": 1})
