"""The served model: loading it (a checkpoint file or an MLflow registry URI) and scoring with it.

Scoring goes through the screening engine (`ml.screen.ScreeningEngine`), the same code as
``drugrepo screen``: a target's side (protein CNN + Gram terms) is computed once per target and cached,
so a single pair costs one small GCN pass and one 768² contraction. The logits are the model's, equal
to ``drugrepo predict``'s within float32 rounding.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.api.cache import TargetCache, target_key
from drugrepo_assets.api.settings import MODELS_URI, ServingSettings
from drugrepo_assets.data.rules import clean_protein, missing_refusal, protein_refusal, smiles_refusal
from drugrepo_assets.ml.dataset import MoleculeStore
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.featurize import InvalidSmilesError, drug_graph, encode_proteins
from drugrepo_assets.ml.model import DrugBAN, load_checkpoint
from drugrepo_assets.ml.screen import ScreeningEngine, prepare_library, rank_table

VALUE_CHARS = 200
MESSAGE_CHARS = 500


@dataclass
class ServedModel:
    """A loaded model and what identifies it: ``version`` (registry name/version, or ``checkpoint:<id>`` for a
    file) for people, ``checkpoint_id`` (`ml.model.checkpoint_id`, as in score tables and registry tags) for caches."""

    model: DrugBAN
    version: str
    checkpoint_id: str
    source: str


def echoed(value: str, limit: int) -> str:
    """``value`` fit to echo in a JSON answer: cut to ``limit`` characters, lone surrogates escaped."""
    cut = value if len(value) <= limit else value[:limit] + "…"
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class InputProblem:
    """One unusable input value: where it is (``index``, ``field``), what it is and why it is refused."""

    index: int
    field: str
    value: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form: the value cut to 200 characters, the message to 500, lone surrogates escaped."""
        return {
            "index": self.index,
            "field": self.field,
            "value": echoed(self.value, VALUE_CHARS),
            "message": echoed(self.message, MESSAGE_CHARS),
        }


class InvalidInputError(ValueError):
    """Inputs that cannot be scored (the API answers 422 with the first problems and their count)."""

    def __init__(self, problems: list[InputProblem], detail: str | None = None) -> None:
        super().__init__(detail or f"{len(problems)} invalid input value(s)")
        self.problems = problems


def _checkpoint_in(folder: Path) -> Path:
    files = sorted(folder.rglob("*.pt"))
    if not files:
        raise FileNotFoundError(f"no .pt checkpoint in the downloaded model ({folder})")
    return next((f for f in files if f.name == "best.pt"), files[0])


def registry_version(uri: str, tracking_uri: str | None) -> str:
    """``name/version`` a ``models:/name@alias`` or ``models:/name/version`` URI points at now."""
    from mlflow import MlflowClient

    match = MODELS_URI.match(uri)
    if match is None:
        return uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if match["alias"]:
        version = client.get_model_version_by_alias(match["name"], match["alias"]).version
    else:
        version = match["version"]
    return f"{match['name']}/{version}"


def alias_missing(exc: BaseException) -> bool:
    """Whether a registry error says the alias (or its model) does not exist, as opposed to a registry out of reach."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def load_model(checkpoint: str | None, uri: str, tracking_uri: str | None) -> ServedModel:
    """The model of the ``checkpoint`` file, else of the registry ``uri`` (an alias is pinned to the version it names)."""
    if checkpoint:
        model, extra = load_checkpoint(checkpoint)
        return ServedModel(model, f"checkpoint:{extra['checkpoint_id']}", extra["checkpoint_id"], checkpoint)
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    version = registry_version(uri, tracking_uri)
    if version != uri and "@" in uri:
        uri = f"models:/{version}"  # pin the version the alias named, so version and weights agree
    with tempfile.TemporaryDirectory(prefix="drugrepo-model-") as folder:  # the weights are in memory once loaded
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder))
        path = _checkpoint_in(local) if local.is_dir() else local
        model, extra = load_checkpoint(str(path))
    return ServedModel(model, version, extra["checkpoint_id"], uri)


def load_served_model(settings: ServingSettings) -> ServedModel:
    """The champion: ``settings.checkpoint``, else the registry URI (``models:/<name>@<alias>`` by default)."""
    return load_model(settings.checkpoint, settings.resolved_model_uri(), settings.mlflow_tracking_uri)


def load_challenger(settings: ServingSettings) -> ServedModel:
    """The challenger: ``settings.challenger_checkpoint``, else ``models:/<name>@<challenger_alias>``."""
    uri = settings.challenger_uri()
    if not settings.challenger_checkpoint and uri is None:
        raise ValueError("no challenger configured (DRUGREPO_CHALLENGER_ALIAS or DRUGREPO_CHALLENGER_CHECKPOINT)")
    return load_model(settings.challenger_checkpoint, uri or "", settings.mlflow_tracking_uri)


def smiles_problem(index: int, field: str, smiles: str, max_atoms: int) -> InputProblem | None:
    """Why a SMILES cannot be scored, decided from its text alone (`rules.smiles_refusal`, no RDKit), or None."""
    refusal = missing_refusal("SMILES", smiles) or smiles_refusal(smiles.strip(), max_atoms)
    return None if refusal is None else InputProblem(index, field, smiles, refusal.message)


def protein_problem(index: int, field: str, sequence: str) -> InputProblem | None:
    """Why a sequence cannot be scored (`rules.protein_refusal`), or None."""
    refusal = protein_refusal(sequence)
    return None if refusal is None else InputProblem(index, field, sequence, refusal.message)


class Scorer:
    """Scores pairs and screens libraries with one model, target terms from ``cache``."""

    def __init__(self, served: ServedModel, cache: TargetCache, drug_chunk: int = 64, library_chunk: int = 512) -> None:
        self.served = served
        self.cache = cache
        self.engine = ScreeningEngine(served.model, device="cpu", drug_chunk=drug_chunk)
        self.drug_chunk = drug_chunk
        self.library_chunk = library_chunk
        self.max_atoms = served.model.config.max_drug_nodes
        self.max_length = served.model.config.max_protein_length

    def target_terms(self, sequence: str) -> tuple[Any, bool]:
        """The engine's terms of one target, from the cache or computed (and cached); (terms, hit)."""

        def compute() -> Any:
            codes = torch.from_numpy(encode_proteins([sequence], self.max_length))
            with torch.inference_mode():
                return self.engine.target_terms(codes)

        return self.cache.get_or_compute(target_key(self.served.checkpoint_id, sequence), compute)

    def _graph(self, index: int, field: str, smiles: str) -> tuple[Any, InputProblem | None]:
        """The model's graph of one SMILES, or why the input rules refuse it (`drug_graph` asks them before featurising)."""
        try:
            return drug_graph(smiles, self.max_atoms), None
        except InvalidSmilesError as exc:
            return None, InputProblem(index, field, smiles, exc.refusal.message)

    def _logits(self, molecules: MoleculeStore, terms: Any) -> np.ndarray:
        """Logits of every molecule of ``molecules`` against one target's terms, in store order."""
        out = np.empty(len(molecules), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(molecules), self.drug_chunk):
                idx = torch.arange(start, min(start + self.drug_chunk, len(molecules)))
                drugs = self.engine.drug_terms(molecules, idx)
                out[start : start + len(idx)] = self.engine.pair_logits(drugs, terms)[:, 0].float().numpy()
        return out

    def predict(self, smiles: Sequence[str], proteins: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """Logits of pairs (raw inputs) in order, and per pair whether its target was cached.

        Raises `InvalidInputError` listing every bad SMILES and sequence (nothing is scored then):
        each distinct value is checked once, text first, and only accepted SMILES are featurised.
        """
        problems: list[InputProblem] = []
        graphs: dict[str, Any] = {}
        refused: dict[str, str] = {}
        sequences: dict[str, str | None] = {}
        for i, (s, p) in enumerate(zip(smiles, proteins)):
            if s not in graphs and s not in refused:
                graph, problem = self._graph(i, "smiles", s)
                if problem:
                    refused[s] = problem.message
                else:
                    graphs[s] = graph
            if s in refused:
                problems.append(InputProblem(i, "smiles", s, refused[s]))
            if p not in sequences:
                refusal = protein_refusal(p)
                sequences[p] = None if refusal is None else refusal.message
            message = sequences[p]
            if message is not None:
                problems.append(InputProblem(i, "protein", p, message))
        if problems:
            raise InvalidInputError(problems)
        logits = np.empty(len(smiles), dtype=np.float32)
        hits = [False] * len(smiles)
        by_target: dict[str, list[int]] = {}
        for i, p in enumerate(proteins):
            by_target.setdefault(clean_protein(p), []).append(i)
        for p, rows in by_target.items():
            terms, hit = self.target_terms(p)
            unique = list(dict.fromkeys(smiles[i] for i in rows))
            store = MoleculeStore.from_graphs([graphs[s] for s in unique])
            per_drug = dict(zip(unique, self._logits(store, terms)))
            for i in rows:
                logits[i] = per_drug[smiles[i]]
                hits[i] = hit
        return logits, hits

    def screen(
        self, protein: str, smiles: Sequence[str], ids: Sequence[str], top: int | None
    ) -> tuple[pd.DataFrame, bool]:
        """Rank a library (raw inputs) against one target, featurised by `prepare_library` as ``drugrepo screen`` does.

        Every SMILES passes the text rules first (no RDKit for a refused one); raises `InvalidInputError`.
        The table's ``pair`` column is each molecule's position in the request (ties rank by it, as by row).
        """
        problem = protein_problem(0, "protein", protein)
        problems = [problem] if problem else []
        text_ok = []
        for i, s in enumerate(smiles):
            refused = smiles_problem(i, "smiles", s, self.max_atoms)
            if refused is None:
                text_ok.append(i)
            else:
                problems.append(refused)
        positions = [str(i) for i in range(len(smiles))]
        library = pd.DataFrame({"id": positions, "smiles": [s.strip() for s in smiles]}).iloc[text_ok]
        parts = []
        for start in range(0, len(library), self.library_chunk):  # chunks: no single long call holds the GIL
            molecules, prepared = prepare_library(library.iloc[start : start + self.library_chunk], self.max_atoms)
            parts.append((molecules, prepared.kept))
            for row, reason in zip(prepared.rejected.index, prepared.rejected["reason"]):
                problems.append(
                    InputProblem(int(row), "smiles", smiles[int(row)], str(reason).removeprefix("SMILES: "))
                )
        if problems:
            raise InvalidInputError(sorted(problems, key=lambda x: (x.field != "protein", x.index)))
        terms, hit = self.target_terms(clean_protein(protein))
        logits = np.concatenate([self._logits(molecules, terms) for molecules, _ in parts])
        kept = pd.concat([k for _, k in parts], ignore_index=True)
        table = rank_table(
            logits[:, None],
            kept["id"].tolist(),
            kept["smiles"].tolist(),
            ["target"],
            self.served.checkpoint_id,
            None if top is None else min(top, len(kept)),
        )
        pair = table["drug_id"].astype(int)
        return table.assign(drug_id=[ids[i] for i in pair], pair=pair), hit


def scores(logits: np.ndarray) -> np.ndarray:
    """sigmoid of logits (float64, as ``drugrepo predict`` writes them)."""
    return sigmoid(np.asarray(logits, dtype=np.float64))
