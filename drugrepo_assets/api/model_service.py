"""The served model: loading it (a checkpoint file or an MLflow registry URI) and scoring with it.

Scoring goes through the screening engine (`screening.engine.ScreeningEngine`), the same code as
``drugrepo screen``: a target's side (protein CNN + Gram terms) is computed once per target and cached,
so a single pair costs one small GCN pass and one 768² contraction. Past the cache, a target's terms come
from the store screens and replicas share (`api.stored_terms`, ``DRUGREPO_TARGET_TERMS``) when set. The logits are the model's, equal
to ``drugrepo predict``'s within float32 rounding.

Molecules are featurised in the app's sandbox (`api.molecules`: RDKit in worker processes, each
molecule within its budget), each distinct molecule of a request once, and scored once: the work of
a request follows what it holds, not how often it repeats it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.api.cache import TargetCache, target_key
from drugrepo_assets.api.molecules import Featuriser
from drugrepo_assets.api.settings import MODELS_URI, ServingSettings
from drugrepo_assets.api.stored_terms import CACHE, TermsSupply
from drugrepo_assets.data.rules import Refusal, clean_protein, missing_refusal, protein_refusal, smiles_refusal
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.features.dataset import MoleculeStore
from drugrepo_assets.ml.features.featurize import CompactMolecule, CompactMolecules
from drugrepo_assets.ml.model.calibration import Temperature
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.screening.engine import ScreeningEngine, rank_table

VALUE_CHARS = 200
MESSAGE_CHARS = 500


@dataclass
class ServedModel:
    """A loaded model and what identifies it: ``version`` (registry name/version, or ``checkpoint:<id>`` for a
    file) for people, ``checkpoint_id`` (`ml.model.checkpoint.checkpoint_id`, as in score tables and registry tags) for caches,
    and the checkpoint's ``temperature`` (`ml.model.calibration`) for ``calibrated_score``."""

    model: DrugBAN
    version: str
    checkpoint_id: str
    source: str
    temperature: Temperature = field(default_factory=Temperature)


def echoed(value: str, limit: int) -> str:
    """``value`` fit to echo in a JSON answer: cut to ``limit`` characters, lone surrogates escaped."""
    cut = value if len(value) <= limit else value[:limit] + "…"
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class InputProblem:
    """One unusable input value: where it is (``index``, ``field``), what it is and why it is refused (the
    input rules' reason ``code``, `data.rules.RULE_CODES`, when a rule refused it)."""

    index: int
    field: str
    value: str
    message: str
    code: str | None = None

    @classmethod
    def refused(cls, index: int, field: str, value: str, refusal: Refusal) -> InputProblem:
        """The problem of a value the input rules refuse."""
        return cls(index, field, value, refusal.message, refusal.code)

    def as_dict(self) -> dict[str, Any]:
        """JSON form: the value cut to 200 characters, the message to 500, lone surrogates escaped."""
        return {
            "index": self.index,
            "field": self.field,
            "value": echoed(self.value, VALUE_CHARS),
            "message": echoed(self.message, MESSAGE_CHARS),
            "code": self.code,
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
        loaded = load_checkpoint(checkpoint)
        version = f"checkpoint:{loaded.checkpoint_id}"
        return ServedModel(loaded.model, version, loaded.checkpoint_id, checkpoint, loaded.temperature)
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
        loaded = load_checkpoint(str(path))
    return ServedModel(loaded.model, version, loaded.checkpoint_id, uri, loaded.temperature)


def load_served_model(settings: ServingSettings) -> ServedModel:
    """The champion: ``settings.checkpoint``, else the registry URI (``models:/<name>@<alias>`` by default)."""
    return load_model(settings.checkpoint, settings.resolved_model_uri(), settings.mlflow_tracking_uri)


def load_challenger(settings: ServingSettings) -> ServedModel:
    """The challenger: ``settings.challenger_checkpoint``, else ``models:/<name>@<challenger_alias>``."""
    uri = settings.challenger_uri()
    if not settings.challenger_checkpoint and uri is None:
        raise ValueError("no challenger configured (DRUGREPO_CHALLENGER_ALIAS or DRUGREPO_CHALLENGER_CHECKPOINT)")
    return load_model(settings.challenger_checkpoint, uri or "", settings.mlflow_tracking_uri)


def text_refusal(smiles: str, max_atoms: int) -> Refusal | None:
    """Why a SMILES cannot be scored, decided from its text alone (`rules.smiles_refusal`, no RDKit), or None."""
    return missing_refusal("SMILES", smiles) or smiles_refusal(smiles.strip(), max_atoms)


def protein_problem(index: int, field: str, sequence: str) -> InputProblem | None:
    """Why a sequence cannot be scored (`rules.protein_refusal`), or None."""
    refusal = protein_refusal(sequence)
    return None if refusal is None else InputProblem.refused(index, field, sequence, refusal)


Verdicts = dict[str, CompactMolecule | Refusal]
"""Each distinct SMILES of a request (as sent) and its compact features or refusal."""


def _accepted(verdicts: Verdicts) -> dict[str, CompactMolecule]:
    """The features of each accepted molecule, by its SMILES with the blanks around it removed."""
    return {s.strip(): m for s, m in verdicts.items() if isinstance(m, CompactMolecule)}


class Scorer:
    """Scores pairs and screens libraries with one model, target terms from ``cache``, else from ``supply`` (the
    terms store, keyed by the model's checkpoint id, or computed), molecules featurised by ``molecules`` (the
    app's RDKit workers, `api.molecules`; a challenger shares them, the cache and the supply)."""

    def __init__(
        self,
        served: ServedModel,
        cache: TargetCache,
        molecules: Featuriser,
        drug_chunk: int = 64,
        supply: TermsSupply | None = None,
    ) -> None:
        self.served = served
        self.cache = cache
        self.molecules = molecules
        self.supply = supply if supply is not None else TermsSupply()
        self.store = self.supply.store(served.checkpoint_id)
        self.engine = ScreeningEngine(served.model, device="cpu", drug_chunk=drug_chunk)
        self.drug_chunk = drug_chunk
        self.max_atoms = served.model.config.max_drug_nodes

    def target_terms(self, sequence: str) -> tuple[Any, bool]:
        """The engine's terms of one (cleaned) target, from the cache, else the store or computed (then cached and
        stored), the source counted; (terms, hit)."""
        source = [CACHE]

        def obtain() -> Any:
            terms, source[0] = self.supply.terms(self.engine, sequence, self.store)
            return terms

        found = self.cache.get_or_compute(target_key(self.served.checkpoint_id, sequence), obtain)
        self.supply.count(source[0])
        return found

    def featurise(self, smiles: Sequence[str], library: bool) -> Verdicts:
        """Each distinct SMILES's features or refusal: the text rules first, here (no RDKit for a refused text),
        then each distinct molecule (blanks around it aside) once in the sandbox (``over_budget`` past its budget;
        a screening ``library`` refuses lone atoms and ions too)."""
        raw = list(dict.fromkeys(smiles))
        text = {s: text_refusal(s, self.max_atoms) for s in raw}
        distinct = list(dict.fromkeys(s.strip() for s in raw if text[s] is None))
        found = dict(zip(distinct, self.molecules(distinct, self.max_atoms, library), strict=True))
        return {s: text[s] or found[s.strip()] for s in raw}

    def _logits(self, features: Sequence[CompactMolecule], terms: Any) -> np.ndarray:
        """Logits of each molecule against one target's terms, in order."""
        molecules = MoleculeStore.from_compact(CompactMolecules.stack(features))
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
        each distinct value is checked once, text first, and each distinct molecule featurised and scored once.
        """
        verdicts = self.featurise(smiles, library=False)
        sequences: dict[str, Refusal | None] = {p: protein_refusal(p) for p in dict.fromkeys(proteins)}
        problems: list[InputProblem] = []
        for i, (s, p) in enumerate(zip(smiles, proteins)):
            verdict, refusal = verdicts[s], sequences[p]
            if isinstance(verdict, Refusal):
                problems.append(InputProblem.refused(i, "smiles", s, verdict))
            if refusal is not None:
                problems.append(InputProblem.refused(i, "protein", p, refusal))
        if problems:
            raise InvalidInputError(problems)
        features = _accepted(verdicts)
        logits = np.empty(len(smiles), dtype=np.float32)
        hits = [False] * len(smiles)
        by_target: dict[str, list[int]] = {}
        for i, p in enumerate(proteins):
            by_target.setdefault(clean_protein(p), []).append(i)
        for p, rows in by_target.items():
            terms, hit = self.target_terms(p)
            unique = list(dict.fromkeys(smiles[i].strip() for i in rows))
            per_drug = dict(zip(unique, self._logits([features[s] for s in unique], terms)))
            for i in rows:
                logits[i] = per_drug[smiles[i].strip()]
                hits[i] = hit
        return logits, hits

    def screen(
        self, protein: str, smiles: Sequence[str], ids: Sequence[str], top: int | None
    ) -> tuple[pd.DataFrame, bool]:
        """Rank a library (raw inputs) against one target, as ``drugrepo screen`` does: the library rules apply.

        Every distinct SMILES is checked and featurised once (the text rules first, no RDKit for a refused one)
        and scored once; raises `InvalidInputError`. The table's ``pair`` column is each molecule's position in
        the request (ties rank by it, as by row).
        """
        problem = protein_problem(0, "protein", protein)
        problems = [problem] if problem else []
        verdicts = self.featurise(smiles, library=True)
        for i, s in enumerate(smiles):
            verdict = verdicts[s]
            if isinstance(verdict, Refusal):
                problems.append(InputProblem.refused(i, "smiles", s, verdict))
        if problems:
            raise InvalidInputError(problems)
        terms, hit = self.target_terms(clean_protein(protein))
        features = _accepted(verdicts)
        cleaned = [s.strip() for s in smiles]
        position = {s: k for k, s in enumerate(features)}
        logits = self._logits(list(features.values()), terms)[[position[c] for c in cleaned]]
        table = rank_table(
            logits[:, None],
            [str(i) for i in range(len(smiles))],
            cleaned,
            ["target"],
            self.served.checkpoint_id,
            None if top is None else min(top, len(smiles)),
        )
        pair = table["drug_id"].astype(int)
        return table.assign(drug_id=[ids[i] for i in pair], pair=pair), hit


def scores(logits: np.ndarray) -> np.ndarray:
    """sigmoid of logits (float64, as ``drugrepo predict`` writes them)."""
    return sigmoid(np.asarray(logits, dtype=np.float64))
