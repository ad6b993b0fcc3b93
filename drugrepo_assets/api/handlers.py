"""The work of one /v1/ request, run on a worker of the bounded pool (never on the event loop).

In order, cheapest first: read the body as JSON whatever its Content-Type (422 for anything else,
NaN/Infinity included); check the request budgets on the raw JSON (413) before the schema (422);
charge the request's cost to the key's rate limit (429); check every value with the input rules
(`data.rules`; 422, the first ``max_listed_problems`` listed with their count); score; answer
(the JSON is written here too). Any other exception is logged and answers a JSON 500.

Cost of a request, in the units of DRUGREPO_RATE_LIMIT_PER_MINUTE: 1 on arrival (charged by the
guard), then 1 per pair (predict) or SMILES (screen) and DRUGREPO_PROTEIN_COST per distinct protein.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from drugrepo_assets.api.challenger import ShadowRunner
from drugrepo_assets.api.metrics import ApiMetrics
from drugrepo_assets.api.model_service import InputProblem, InvalidInputError, Scorer, ServedModel, echoed, scores
from drugrepo_assets.api.ratelimit import RateLimiter
from drugrepo_assets.api.request_log import LoggedBatch, RequestLog
from drugrepo_assets.api.schemas import PredictRequest, ScreenRequest
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.data.rules import clean_protein
from drugrepo_assets.ml.model.calibration import CALIBRATED_COLUMN
from drugrepo_assets.request_records import CHAMPION, SHADOW

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


@dataclass
class Shadow:
    """The challenger that scores a copy of a request off the answer path, and the thread that runs it."""

    scorer: Scorer
    runner: ShadowRunner


@dataclass
class Work:
    """What a request's work needs: settings, the model that answers (read once per request) and its ``role``,
    the key's limiter, log, metrics, and the ``shadow`` challenger that scores a copy (shadow mode, drawn)."""

    settings: ServingSettings
    scorer: Scorer
    limiter: RateLimiter
    request_log: RequestLog
    metrics: ApiMetrics
    role: str = CHAMPION
    shadow: Shadow | None = None


class Refused(Exception):
    """A request answered with ``status`` and ``detail`` before any scoring (413, 429)."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class _JsonConstant(ValueError):
    pass


def _dumps(value: Any) -> bytes:
    """Strict JSON (no NaN) as UTF-8 bytes."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def json_response(status: int, content: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (strict JSON: no NaN)."""
    return Response(_dumps(content), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, detail: str, retry_after: int | None = None) -> Response:
    """An `ErrorBody` answer; with ``retry_after``, also the Retry-After header."""
    if retry_after is None:
        return json_response(status, {"detail": detail})
    return json_response(
        status, {"detail": detail, "retry_after_seconds": retry_after}, {"Retry-After": str(retry_after)}
    )


def invalid_response(detail: str, problems: Sequence[InputProblem], listed: int) -> Response:
    """The 422 `InvalidInput` answer: the first ``listed`` problems and how many there are."""
    return json_response(
        422, {"detail": detail, "errors": [p.as_dict() for p in problems[:listed]], "error_count": len(problems)}
    )


def _no_constant(name: str) -> Any:
    raise _JsonConstant(f"JSON has {name}, which standard JSON does not allow: send a number or a string")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonConstant(f"JSON number {text[:40]} is out of the float range")
    return value


def read_json(raw: bytes, max_values: int, budget: str) -> Any:
    """The JSON value of a body; `InvalidInputError` (422) when it is not UTF-8 standard JSON.

    A body with more than ``max_values`` commas holds more values than any request within the
    ``budget`` settings, and is refused (413) before parsing: parsing holds the GIL throughout.
    """
    commas = raw.count(b",")
    if commas > max_values:
        raise Refused(413, f"{commas:,} JSON values, more than a request within {budget} can hold ({max_values:,})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError([], f"body is not UTF-8 text (byte {exc.start}): send JSON") from None
    if not text.strip():
        raise InvalidInputError([], "body is empty: send JSON (see /docs)")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _JsonConstant as exc:
        raise InvalidInputError([], str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError([], f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidInputError([], "body is not usable JSON: it nests too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidInputError([], f"body is not usable JSON: {echoed(str(exc), 200)}") from None


def _summary(value: Any) -> str:
    """A short text of a JSON value for a problem report (never the whole of a big value)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)


def validated(model: type[M], data: Any) -> M:
    """``data`` as ``model``; `InvalidInputError` naming each wrong field (path, value, pydantic's message)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            index = next((x for x in loc if isinstance(x, int)), 0)
            field = ".".join(str(x) for x in loc) or "body"
            problems.append(InputProblem(index, field, _summary(error.get("input")), error["msg"]))
        raise InvalidInputError(problems, f"the body does not have the {model.__name__} shape (see /docs)") from None


def _items(data: Any, field: str) -> int:
    """How many items the raw JSON's list ``field`` has (0 when it is not an object with that list)."""
    value = data.get(field) if isinstance(data, dict) else None
    return len(value) if isinstance(value, list) else 0


def _over(count: int, limit: int, what: str, setting: str) -> None:
    if count > limit:
        raise Refused(413, f"{count:,} {what}, more than the limit of {limit:,} per request ({setting})")


def _charge(work: Work, key: str, cost: float) -> None:
    decision = work.limiter.allow(key, cost)
    if not decision.allowed:
        work.metrics.rate_limited.labels("cost").inc()
        raise Refused(
            429,
            f"rate limit exceeded for this API key: this request costs {cost:g} units "
            f"(DRUGREPO_RATE_LIMIT_PER_MINUTE, DRUGREPO_RATE_LIMIT_BURST)",
            decision.retry_after,
        )


def answer(work: Work, job: Callable[[], Response]) -> Response:
    """``job()``, with refusals, invalid input and unexpected exceptions turned into JSON answers."""
    try:
        return job()
    except Refused as exc:
        return error_response(exc.status, exc.detail, exc.retry_after)
    except InvalidInputError as exc:
        return invalid_response(str(exc), exc.problems, work.settings.max_listed_problems)
    except Exception:  # the answer stays a JSON 500 without internals; the trace goes to the log
        log.exception("request failed")
        return error_response(500, "internal error (logged by the server)")


def _count_cache(work: Work, hits: list[bool]) -> None:
    backend = work.scorer.cache.backend
    work.metrics.cache.labels("hit", backend).inc(sum(hits))
    work.metrics.cache.labels("miss", backend).inc(len(hits) - sum(hits))


@dataclass
class RequestPairs:
    """The pairs of one request as a model scored them: endpoint, key id, request id, the cleaned inputs of the
    rows answered and each one's position in the request (a screen's table is in rank order, maybe its top only),
    and how many pairs were scored in all (``scored``)."""

    endpoint: str
    key: str
    request_id: str
    smiles: Sequence[str]
    proteins: Sequence[str]
    pairs: Sequence[int]
    scored: int


def record(
    work: Work, request: RequestPairs, served: ServedModel, role: str, logits: list[float], probabilities: list[float]
) -> None:
    """Count one model's scoring of a request (per version and role; the answered rows' scores per role) and queue
    those rows to the request log."""
    metrics = work.metrics
    labels = (request.endpoint, served.version, served.checkpoint_id, role)
    metrics.model_requests.labels(*labels).inc()
    metrics.model_pairs.labels(*labels).inc(request.scored)
    if role != SHADOW:
        metrics.pairs.labels(request.endpoint).inc(request.scored)
    histogram = metrics.scores.labels(role)
    for score in probabilities:
        histogram.observe(score)
    work.request_log.submit(
        LoggedBatch(
            request.endpoint,
            request.key,
            served.version,
            served.checkpoint_id,
            request.smiles,
            request.proteins,
            logits,
            probabilities,
            role,
            request.request_id,
            request.pairs,
        )
    )


ShadowScores = Callable[[Scorer], tuple[RequestPairs, list[float], list[float]]]


def _shadow(work: Work, score: ShadowScores) -> None:
    """Queue the shadow challenger's scoring of the request (``score`` with its scorer), recorded as role shadow."""
    shadow = work.shadow
    if shadow is None:
        return

    def copy() -> None:
        request, logits, probabilities = score(shadow.scorer)
        record(work, request, shadow.scorer.served, SHADOW, logits, probabilities)

    shadow.runner.submit(copy)


def _model_fields(served: ServedModel, role: str) -> dict[str, Any]:
    """The answering model's fields of a response, its temperature and whether it was fitted (`ml.model.calibration`)."""
    return {
        "model_version": served.version,
        "checkpoint_id": served.checkpoint_id,
        "role": role,
        "temperature": served.temperature.value,
        "calibrated": served.temperature.fitted,
    }


def predict(work: Work, raw: bytes, key: str) -> Response:
    """/v1/predict: predictions of the pairs in request order."""

    def job() -> Response:
        settings = work.settings
        data = read_json(raw, 4 * settings.max_pairs_per_request + 100, "DRUGREPO_MAX_PAIRS_PER_REQUEST")
        _over(_items(data, "pairs"), settings.max_pairs_per_request, "pairs", "DRUGREPO_MAX_PAIRS_PER_REQUEST")
        body = validated(PredictRequest, data)
        smiles = [p.smiles for p in body.pairs]
        proteins = [p.protein for p in body.pairs]
        targets = {clean_protein(p) for p in proteins}
        _over(len(targets), settings.max_proteins_per_request, "distinct proteins", "DRUGREPO_MAX_PROTEINS_PER_REQUEST")
        _over(
            sum(map(len, set(smiles))),
            settings.max_smiles_chars_per_request,
            "characters of distinct SMILES",
            "DRUGREPO_MAX_SMILES_CHARS_PER_REQUEST",
        )
        _charge(work, key, len(smiles) + settings.protein_cost * len(targets))
        served = work.scorer.served
        logits, hits = work.scorer.predict(smiles, proteins)
        probabilities = scores(logits)
        _count_cache(work, list(dict(zip(map(clean_protein, proteins), hits)).values()))
        cleaned = ([s.strip() for s in smiles], [clean_protein(p) for p in proteins])
        request = RequestPairs("/v1/predict", key, uuid.uuid4().hex, *cleaned, list(range(len(smiles))), len(smiles))
        record(work, request, served, work.role, logits.tolist(), probabilities.tolist())

        def shadow_scores(scorer: Scorer) -> tuple[RequestPairs, list[float], list[float]]:
            shadow_logits = scorer.predict(smiles, proteins)[0]
            return request, shadow_logits.tolist(), scores(shadow_logits).tolist()

        _shadow(work, shadow_scores)
        calibrated = served.temperature.apply(logits)
        predictions = [
            {"logit": float(x), "score": float(y), CALIBRATED_COLUMN: float(c)}
            for x, y, c in zip(logits, probabilities, calibrated)
        ]
        return json_response(
            200,
            {"predictions": predictions, **_model_fields(served, work.role)},
            {"X-Request-Id": request.request_id},
        )

    return answer(work, job)


def screen(work: Work, raw: bytes, key: str) -> Response:
    """/v1/screen: the library ranked against one target, best first."""

    def job() -> Response:
        settings = work.settings
        data = read_json(raw, 4 * settings.max_screen_smiles + 100, "DRUGREPO_MAX_SCREEN_SMILES")
        for field in ("smiles", "ids"):
            _over(_items(data, field), settings.max_screen_smiles, f"{field}", "DRUGREPO_MAX_SCREEN_SMILES")
        body = validated(ScreenRequest, data)
        if body.ids is not None and len(body.ids) != len(body.smiles):
            raise InvalidInputError(
                [InputProblem(0, "ids", _summary(body.ids), f"{len(body.ids)} ids for {len(body.smiles)} SMILES")],
                "ids and smiles differ in length",
            )
        _over(
            sum(map(len, set(body.smiles))),
            settings.max_smiles_chars_per_request,
            "characters of distinct SMILES",
            "DRUGREPO_MAX_SMILES_CHARS_PER_REQUEST",
        )
        _charge(work, key, len(body.smiles) + settings.protein_cost)
        ids = body.ids or [str(i) for i in range(len(body.smiles))]
        served = work.scorer.served
        table, hit = work.scorer.screen(body.protein, body.smiles, ids, body.top)
        _count_cache(work, [hit])
        request_id = uuid.uuid4().hex
        protein = clean_protein(body.protein)

        def pairs_of(ranked: pd.DataFrame) -> RequestPairs:
            smiles, pairs = ranked["smiles"].tolist(), ranked["pair"].tolist()
            return RequestPairs("/v1/screen", key, request_id, smiles, [protein] * len(smiles), pairs, len(body.smiles))

        record(work, pairs_of(table), served, work.role, table["logit"].tolist(), table["score"].tolist())

        def shadow_scores(scorer: Scorer) -> tuple[RequestPairs, list[float], list[float]]:
            ranked = scorer.screen(body.protein, body.smiles, ids, body.top)[0]
            return pairs_of(ranked), ranked["logit"].tolist(), ranked["score"].tolist()

        _shadow(work, shadow_scores)
        table[CALIBRATED_COLUMN] = served.temperature.apply(table["logit"].to_numpy())
        results = b",".join(
            _dumps(
                {
                    "rank": int(r.rank),
                    "id": str(r.drug_id),
                    "smiles": str(r.smiles),
                    "logit": float(r.logit),
                    "score": float(r.score),
                    CALIBRATED_COLUMN: float(getattr(r, CALIBRATED_COLUMN)),
                    "percentile": float(r.percentile),
                }
            )
            for r in table.itertuples()
        )
        model = _dumps(_model_fields(served, work.role))
        return Response(
            b'{"results":[' + results + b"]," + model[1:],
            media_type="application/json",
            headers={"X-Request-Id": request_id},
        )

    return answer(work, job)
