"""Request and response bodies of the API (they are also its OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from drugrepo_assets.ml.model.checkpoint import CHECKPOINT_ID_CHARS


def unicode_text(value: str) -> str:
    """``value`` when it is Unicode text; JSON escapes can spell lone surrogates ("\\ud800"), which are not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"holds a lone surrogate (U+{ord(value[exc.start]):04X} at position {exc.start}): not Unicode text"
        ) from None
    return value


Text = Annotated[str, AfterValidator(unicode_text)]
MODEL_VERSION = "Registry name/version, or checkpoint:<checkpoint_id> for a checkpoint file."
CHECKPOINT_ID = (
    f"The id of the model's weights ({CHECKPOINT_ID_CHARS} hex digits): the checkpoint_id of score tables, "
    "of the MLflow training run and of the registry version."
)


ROLE = (
    "The role of the model that answered: champion, or challenger for the share of requests DRUGREPO_CHALLENGER_SHARE "
    "sends it in split mode (a shadow challenger never answers)."
)
Role = Literal["champion", "challenger"]
CALIBRATED = (
    "sigmoid(logit / temperature): the interaction probability calibrated on the checkpoint's validation set "
    "(temperature scaling); equal to score where the checkpoint records no temperature."
)
TEMPERATURE = "The checkpoint's temperature T, fitted on its validation set by training; 1 where it records none."
CALIBRATED_FLAG = "Whether the checkpoint records a fitted temperature (false: calibrated_score = score, T = 1)."


class Pair(BaseModel):
    """One drug–target pair."""

    model_config = ConfigDict(extra="forbid")

    smiles: Text = Field(description="The drug as a SMILES string.", examples=["CC(=O)Oc1ccccc1C(=O)O"])
    protein: Text = Field(description="The target's amino-acid sequence (DrugBAN's 25 letters).")


class PredictRequest(BaseModel):
    """Pairs to score."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[Pair] = Field(min_length=1, description="Pairs to score; predictions come back in this order.")


class Prediction(BaseModel):
    """The model's output for one pair."""

    logit: float = Field(description="Raw model output.")
    score: float = Field(description="sigmoid(logit): the predicted interaction probability.")
    calibrated_score: float = Field(description=CALIBRATED)


class PredictResponse(BaseModel):
    """Predictions in request order, and the model that made them."""

    predictions: list[Prediction]
    model_version: str = Field(description=MODEL_VERSION)
    checkpoint_id: str = Field(description=CHECKPOINT_ID)
    role: Role = Field(description=ROLE)
    temperature: float = Field(description=TEMPERATURE)
    calibrated: bool = Field(description=CALIBRATED_FLAG)


class ScreenRequest(BaseModel):
    """One target and a library of molecules to rank against it."""

    model_config = ConfigDict(extra="forbid")

    protein: Text = Field(description="The target's amino-acid sequence.")
    smiles: list[Text] = Field(min_length=1, description="The library's molecules.")
    ids: list[Text] | None = Field(default=None, description="Ids of the molecules (default: their index).")
    top: int | None = Field(default=None, ge=1, description="Return only the best K.")


class ScreenHit(BaseModel):
    """One molecule's place in the ranking."""

    rank: int = Field(description="1 = highest logit; ties share the lowest rank.")
    id: str
    smiles: str
    logit: float
    score: float
    calibrated_score: float = Field(description=CALIBRATED)
    percentile: float = Field(description="Share of the library scoring at or below it, in percent.")


class ScreenResponse(BaseModel):
    """The ranked library (best first)."""

    results: list[ScreenHit]
    model_version: str = Field(description=MODEL_VERSION)
    checkpoint_id: str = Field(description=CHECKPOINT_ID)
    role: Role = Field(description=ROLE)
    temperature: float = Field(description=TEMPERATURE)
    calibrated: bool = Field(description=CALIBRATED_FLAG)


class Problem(BaseModel):
    """One refused input value."""

    index: int = Field(description="Position of the pair (predict) or molecule (screen); 0 for the screen's protein.")
    field: str = Field(description="The value's field (smiles, protein) or, for a wrong shape, its path in the body.")
    value: str = Field(description="The value, cut to 200 characters.")
    message: str
    code: str | None = Field(
        default=None,
        description="The input rules' reason code (drugrepo validate's reason_code: invalid_smiles, too_many_rings, "
        "over_budget, …); null for a body of the wrong shape.",
    )


class InvalidInput(BaseModel):
    """Body of a 422: a body that is not JSON of the documented shape, or values that cannot be scored."""

    detail: str
    errors: list[Problem] = Field(description="The first problems (at most DRUGREPO_MAX_LISTED_PROBLEMS).")
    error_count: int = Field(description="How many problems there are in all.")


class ErrorBody(BaseModel):
    """Body of a 401, 413, 429, 500 or 503."""

    detail: str
    retry_after_seconds: int | None = Field(default=None, description="With 429 and 503: when to try again.")
