"""Request and response bodies of the API (they are also its OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class Pair(BaseModel):
    """One drug–target pair."""

    model_config = ConfigDict(extra="forbid")

    smiles: str = Field(description="The drug as a SMILES string.", examples=["CC(=O)Oc1ccccc1C(=O)O"])
    protein: str = Field(description="The target's amino-acid sequence (DrugBAN's 25 letters).")


class PredictRequest(BaseModel):
    """Pairs to score."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[Pair] = Field(min_length=1, description="Pairs to score; predictions come back in this order.")


class Prediction(BaseModel):
    """The model's output for one pair."""

    logit: float = Field(description="Raw model output.")
    score: float = Field(description="sigmoid(logit): the predicted interaction probability.")


class PredictResponse(BaseModel):
    """Predictions in request order, and the model that made them."""

    predictions: list[Prediction]
    model_version: str = Field(description="Registry name/version, or checkpoint:<hash> for a file.")


class ScreenRequest(BaseModel):
    """One target and a library of molecules to rank against it."""

    model_config = ConfigDict(extra="forbid")

    protein: str = Field(description="The target's amino-acid sequence.")
    smiles: list[str] = Field(min_length=1, description="The library's molecules.")
    ids: Optional[list[str]] = Field(default=None, description="Ids of the molecules (default: their index).")
    top: Optional[int] = Field(default=None, ge=1, description="Return only the best K.")


class ScreenHit(BaseModel):
    """One molecule's place in the ranking."""

    rank: int = Field(description="1 = highest logit; ties share the lowest rank.")
    id: str
    smiles: str
    logit: float
    score: float
    percentile: float = Field(description="Share of the library scoring at or below it, in percent.")


class ScreenResponse(BaseModel):
    """The ranked library (best first)."""

    results: list[ScreenHit]
    model_version: str


class Problem(BaseModel):
    """One refused input value."""

    index: int = Field(description="Position of the pair (predict) or molecule (screen); 0 for the screen's protein.")
    field: str
    value: str
    message: str


class InvalidInput(BaseModel):
    """Body of a 422 for values that cannot be scored."""

    detail: str
    errors: list[Problem]
