"""The served model: loading it (a checkpoint file or an MLflow registry URI) and scoring with it.

Scoring goes through the screening engine (`ml.screen.ScreeningEngine`), the same code as
``drugrepo screen``: a target's side (protein CNN + Gram terms) is computed once per target and cached,
so a single pair costs one small GCN pass and one 768² contraction. The logits are the model's, equal
to ``drugrepo predict``'s within float32 rounding.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.api.cache import TargetCache, target_key
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.ml.dataset import MoleculeStore
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.featurize import PROTEIN_ALPHABET, InvalidSmilesError, drug_graph, encode_proteins
from drugrepo_assets.ml.model import DrugBAN, load_checkpoint
from drugrepo_assets.ml.screen import ScreeningEngine, prepare_library, rank_table

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
_ALLOWED = frozenset(PROTEIN_ALPHABET)
_VALUE_CHARS = 200


@dataclass
class ServedModel:
    """A loaded model and what identifies it: ``version`` for people, ``model_id`` (file hash) for caches."""

    model: DrugBAN
    version: str
    model_id: str
    source: str


@dataclass
class InputProblem:
    """One unusable input value: where it is (``index``, ``field``), what it is and why it is refused."""

    index: int
    field: str
    value: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form, the value cut to 200 characters."""
        value = self.value if len(self.value) <= _VALUE_CHARS else self.value[:_VALUE_CHARS] + "…"
        return {"index": self.index, "field": self.field, "value": value, "message": self.message}


class InvalidInputError(ValueError):
    """Inputs that cannot be scored (the API answers 422 with every problem)."""

    def __init__(self, problems: list[InputProblem]) -> None:
        super().__init__(f"{len(problems)} invalid input value(s)")
        self.problems = problems


def _file_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _checkpoint_in(folder: Path) -> Path:
    files = sorted(folder.rglob("*.pt"))
    if not files:
        raise FileNotFoundError(f"no .pt checkpoint in the downloaded model ({folder})")
    return next((f for f in files if f.name == "best.pt"), files[0])


def registry_version(uri: str, tracking_uri: Optional[str]) -> str:
    """``name/version`` a ``models:/name@alias`` or ``models:/name/version`` URI points at now."""
    from mlflow import MlflowClient

    match = _MODELS_URI.match(uri)
    if match is None:
        return uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if match["alias"]:
        version = client.get_model_version_by_alias(match["name"], match["alias"]).version
    else:
        version = match["version"]
    return f"{match['name']}/{version}"


def load_served_model(settings: ServingSettings) -> ServedModel:
    """The model of ``settings.checkpoint``, else of the registry URI (``models:/<name>@<alias>`` by default)."""
    if settings.checkpoint:
        path = Path(settings.checkpoint)
        model, _ = load_checkpoint(str(path))
        model_id = _file_id(path)
        return ServedModel(model, f"checkpoint:{model_id[:12]}", model_id, str(path))
    import mlflow

    uri = settings.resolved_model_uri()
    if settings.mlflow_tracking_uri:
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    version = registry_version(uri, settings.mlflow_tracking_uri)
    if version != uri and "@" in uri:
        uri = f"models:/{version}"  # pin the version the alias named, so version and weights agree
    folder = Path(tempfile.mkdtemp(prefix="drugrepo-model-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder)))
    path = _checkpoint_in(local) if local.is_dir() else local
    model, _ = load_checkpoint(str(path))
    return ServedModel(model, version, _file_id(path), uri)


def clean_smiles(value: str) -> str:
    """A SMILES as the CLI reads it (surrounding blanks removed)."""
    return value.strip()


def clean_protein(value: str) -> str:
    """A sequence as the CLI reads it (blanks removed, upper case)."""
    return value.strip().upper()


def protein_problem(index: int, field: str, sequence: str) -> Optional[InputProblem]:
    """Why a (cleaned) sequence cannot be scored, or None."""
    if not sequence:
        return InputProblem(index, field, sequence, "empty protein sequence")
    bad = sorted(set(sequence) - _ALLOWED)
    if bad:
        return InputProblem(index, field, sequence, f"letters {''.join(bad)!r} outside DrugBAN's 25-letter alphabet")
    return None


class Scorer:
    """Scores pairs and screens libraries with one model, target terms from ``cache``."""

    def __init__(self, served: ServedModel, cache: TargetCache, drug_chunk: int = 64) -> None:
        self.served = served
        self.cache = cache
        self.engine = ScreeningEngine(served.model, device="cpu", drug_chunk=drug_chunk)
        self.drug_chunk = drug_chunk
        self.max_atoms = served.model.config.max_drug_nodes
        self.max_length = served.model.config.max_protein_length

    def target_terms(self, sequence: str) -> tuple[Any, bool]:
        """The engine's terms of one target, from the cache or computed (and cached); (terms, hit)."""

        def compute() -> Any:
            codes = torch.from_numpy(encode_proteins([sequence], self.max_length))
            with torch.inference_mode():
                return self.engine.target_terms(codes)

        return self.cache.get_or_compute(target_key(self.served.model_id, sequence), compute)

    def _graph(self, index: int, field: str, smiles: str) -> tuple[Any, Optional[InputProblem]]:
        if not smiles:
            return None, InputProblem(index, field, smiles, "empty SMILES")
        try:
            graph = drug_graph(smiles)
        except InvalidSmilesError:
            return None, InputProblem(index, field, smiles, "cannot parse SMILES")
        if graph.num_nodes > self.max_atoms:
            return None, InputProblem(index, field, smiles, f"{graph.num_nodes} atoms, more than DrugBAN's {self.max_atoms}")
        return graph, None

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
        """Logits of pairs (cleaned inputs) in order, and per pair whether its target was cached.

        Raises `InvalidInputError` listing every bad SMILES and sequence (nothing is scored then).
        """
        problems: list[InputProblem] = []
        graphs: dict[str, Any] = {}
        refused: dict[str, str] = {}
        for i, (s, p) in enumerate(zip(smiles, proteins)):
            if s not in graphs and s not in refused:
                graph, problem = self._graph(i, "smiles", s)
                if problem:
                    refused[s] = problem.message
                else:
                    graphs[s] = graph
            if s in refused:
                problems.append(InputProblem(i, "smiles", s, refused[s]))
            bad_protein = protein_problem(i, "protein", p)
            problems += [bad_protein] if bad_protein else []
        if problems:
            raise InvalidInputError(sorted(problems, key=lambda x: (x.index, x.field)))
        logits = np.empty(len(smiles), dtype=np.float32)
        hits = [False] * len(smiles)
        by_target: dict[str, list[int]] = {}
        for i, p in enumerate(proteins):
            by_target.setdefault(p, []).append(i)
        for p, rows in by_target.items():
            terms, hit = self.target_terms(p)
            unique = list(dict.fromkeys(smiles[i] for i in rows))
            store = MoleculeStore.from_graphs([graphs[s] for s in unique])
            per_drug = dict(zip(unique, self._logits(store, terms)))
            for i in rows:
                logits[i] = per_drug[smiles[i]]
                hits[i] = hit
        return logits, hits

    def screen(self, protein: str, smiles: Sequence[str], ids: Sequence[str], top: Optional[int]) -> tuple[pd.DataFrame, bool]:
        """Rank a library against one target (featurised by `prepare_library`, as ``drugrepo screen`` does)."""
        problem = protein_problem(0, "protein", protein)
        library = pd.DataFrame({"id": list(ids), "smiles": list(smiles)})
        molecules, prepared = prepare_library(library, self.max_atoms)
        problems = [problem] if problem else []
        for row, reason in zip(prepared.rejected.index, prepared.rejected["reason"]):
            problems.append(InputProblem(int(row), "smiles", str(library.at[row, "smiles"]), reason))
        if problems:
            raise InvalidInputError(sorted(problems, key=lambda x: (x.field != "protein", x.index)))
        terms, hit = self.target_terms(protein)
        logits = self._logits(molecules, terms)
        table = rank_table(logits[:, None], prepared.kept["id"].tolist(), prepared.kept["smiles"].tolist(),
                           ["target"], self.served.version, top)
        return table, hit


def scores(logits: np.ndarray) -> np.ndarray:
    """sigmoid of logits (float64, as ``drugrepo predict`` writes them)."""
    return sigmoid(np.asarray(logits, dtype=np.float64))
