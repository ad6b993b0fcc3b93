"""The checkpoint format: DrugBAN weights, their config and id, and what training recorded, in one file.

A file is checked before any tensor is built (the config against `ml.model.model_config`'s bounds, the state_dict
against the config), and its weights against the checkpoint id it records. A bare reference DrugBAN
``state_dict`` loads too (unverified) and `import_reference_checkpoint` writes it in this format.
"""

from __future__ import annotations

import hashlib
import logging
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from drugrepo_assets.files import write_local_atomic
from drugrepo_assets.ml.model.calibration import Temperature, checkpoint_temperature
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.model.model_config import MAX_PARAMETERS, DrugBANConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "drugrepo.drugban/1"
MAX_PICKLE_BYTES = 64 * 1024 * 1024
"""Largest pickle record of a checkpoint file (its tensors are separate records; ours and the reference's are KBs)."""
CHECKPOINT_ID_CHARS = 16
"""Hex digits of a checkpoint id (`checkpoint_id`): 64 bits of the SHA-256."""


class CheckpointError(ValueError):
    """A checkpoint file refused before use; the message names the file and why (the field and its bound)."""


@dataclass(frozen=True)
class TrainingProvenance:
    """What training (or an import) recorded beside the weights; None where the file records none or not as typed.

    best.pt records ``epoch``, ``val_auroc`` and ``train_config``; last.pt ``epoch``, ``best_epoch``,
    ``best_val_auroc``, ``history`` and ``train_config``; an imported reference file ``imported_from``.
    """

    epoch: int | None = None
    val_auroc: float | None = None
    best_epoch: int | None = None
    best_val_auroc: float | None = None
    train_config: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    imported_from: dict[str, str] | None = None

    @classmethod
    def of(cls, extra: Mapping[str, Any]) -> TrainingProvenance:
        """The provenance in a checkpoint's extra entries, each taken only where it has the type written."""

        def typed(key: str, kind: type | tuple[type, ...]) -> Any:
            value = extra.get(key)
            return value if isinstance(value, kind) and not isinstance(value, bool) else None

        return cls(
            epoch=typed("epoch", int),
            val_auroc=typed("val_auroc", (int, float)),
            best_epoch=typed("best_epoch", int),
            best_val_auroc=typed("best_val_auroc", (int, float)),
            train_config=typed("train_config", dict),
            history=typed("history", list),
            imported_from=typed("imported_from", dict),
        )


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint as `load_checkpoint` returns it: the model (eval mode), its id and config, what training recorded.

    ``extra`` is every entry of the file beyond the format, config and state_dict, ``checkpoint_id`` included,
    for the few readers of entries of their own (CDAN's, a resumed run's optimiser and history).
    """

    model: DrugBAN
    checkpoint_id: str
    config: DrugBANConfig
    provenance: TrainingProvenance
    extra: dict[str, Any]

    @property
    def temperature(self) -> Temperature:
        """The calibration temperature training fitted (`calibration.checkpoint_temperature`); T = 1 where none."""
        return checkpoint_temperature(self.extra)


def state_dict_problem(state_dict: object, expected: Mapping[str, Tensor]) -> str | None:
    """Why ``state_dict`` does not fit the ``expected`` one (keys, shapes, dtype kinds, dense tensors), or None.

    ``expected`` is a model's state_dict, on the meta device when checking a file: nothing is allocated.
    A floating tensor may be any floating dtype (it is cast on load); integer buffers must match exactly.
    """
    if not isinstance(state_dict, Mapping):
        return f"the state_dict is a {type(state_dict).__name__}, not a mapping"
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        counts = [
            f"{len(keys)} {what} ({', '.join(str(k)[:80] for k in keys[:3])}{', …' if len(keys) > 3 else ''})"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        return f"the state_dict's keys are not the config's: {', '.join(counts)}"
    for key, want in expected.items():
        got = state_dict[key]
        if not isinstance(got, Tensor) or got.layout != torch.strided:
            return f"state_dict {key} is not a dense tensor"
        if tuple(got.shape) != tuple(want.shape):
            return f"state_dict {key} has shape {list(got.shape)}, the config implies {list(want.shape)}"
        if got.dtype != want.dtype and not (got.dtype.is_floating_point and want.dtype.is_floating_point):
            return f"state_dict {key} is {got.dtype}, the model's is {want.dtype}"
    return None


_NORMAL_FILLS = (Tensor.normal_, torch.nn.init.normal_)


class _NoValuesOnMeta(TorchFunctionMode):
    """Skips the two value computations of DrugBAN's ``__init__`` while it is built on the meta device
    (``normal_`` fills, a weight norm): a meta tensor holds no values, and torch's meta kernels for these
    are Python references that import ``torch._dynamo`` (about 1 s of CPU in every process that loads a model)."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _NORMAL_FILLS:
            tensor = args[0] if args else kwargs["tensor"]
            if tensor.is_meta:
                return tensor
        if func is torch.linalg.vector_norm and args[0].is_meta and len(args) == 1 and not kwargs:
            return torch.empty((), dtype=args[0].dtype, device="meta")
        return func(*args, **kwargs)


def build_model(config: DrugBANConfig, state_dict: Mapping[str, Tensor], device: str | torch.device = "cpu") -> DrugBAN:
    """The model of ``config`` holding ``state_dict``, checked before any memory is allocated.

    The model is first built on the meta device (no storage): its parameter count is bounded by
    `MAX_PARAMETERS` and its state_dict's keys, shapes and dtypes must be ``state_dict``'s; only then
    does it get memory (uninitialised: the strict load writes every entry). ValueError says why not.
    """
    with torch.device("meta"), _NoValuesOnMeta():
        model = DrugBAN(config)
    expected = model.state_dict()
    parameters = sum(math.prod(t.shape) for t in expected.values())
    if parameters > MAX_PARAMETERS:
        raise ValueError(
            f"the config implies {parameters:,} parameters, above the format's maximum of {MAX_PARAMETERS:,}"
        )
    problem = state_dict_problem(state_dict, expected)
    if problem is not None:
        raise ValueError(problem)
    model = model.to_empty(device=device)
    model.load_state_dict(state_dict, strict=True)
    return model


def load_reference_state_dict(state_dict: Mapping[str, Tensor], config: DrugBANConfig | None = None) -> DrugBAN:
    """Build a model from a reference DrugBAN ``state_dict`` (strict: every key, shape and dtype kind must match)."""
    return build_model(config or DrugBANConfig(), state_dict)


def export_reference_state_dict(model: DrugBAN) -> dict[str, Tensor]:
    """The reference DrugBAN ``state_dict`` of a model (same keys, shapes, dtypes), detached copies.

    A public function for users (the README's checkpoint section): weights trained here, handed back to the
    reference code. The package itself never calls it; its tests check it against the reference's own state_dict.
    """
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def checkpoint_id(model: DrugBAN) -> str:
    """The id of a model's weights: the first 16 hex digits of the SHA-256 of its config and state_dict.

    The one id of a checkpoint everywhere (the file's ``checkpoint_id`` entry, score tables, MLflow tags,
    registry version tags, the API's ``model_version``). It depends on the weights only, so a copy
    downloaded from the registry, a reference state_dict export and the file itself share it.
    """
    digest = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
    for key, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:CHECKPOINT_ID_CHARS]


def save_checkpoint(path: str, model: DrugBAN, **extra: Any) -> None:
    """Save weights + config + anything plain (optimizer state, epoch, metrics) for resumption.

    The file records its `checkpoint_id`; `load_checkpoint` checks it. Written atomically
    (`files.write_local_atomic`): a process killed mid-write leaves the previous file whole.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "checkpoint_id": checkpoint_id(model),
        **extra,
    }
    write_local_atomic(path, lambda handle: torch.save(payload, handle))


def _read_checkpoint(path: str, map_location: str | torch.device) -> Any:
    """``torch.load(weights_only=True)`` of a checkpoint, its tensors memory-mapped (read when used).

    torch.save's zip format stores every record uncompressed: a compressed record (a possible zip bomb,
    expanded in memory by torch's reader) or an oversized pickle is refused from the zip's directory,
    before anything is read. Other files (torch's legacy format, or not a checkpoint) go to torch.load as they are.
    """
    if not zipfile.is_zipfile(path):
        return torch.load(path, map_location=map_location, weights_only=True)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(
                    f"{path}: record {info.filename[:80]} is compressed (torch.save stores them whole)"
                )
            if info.filename.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(
                    f"{path}: record {info.filename[:80]} holds {info.file_size:,} bytes, "
                    f"above the format's maximum of {MAX_PICKLE_BYTES:,}"
                )
    return torch.load(path, map_location=map_location, weights_only=True, mmap=True)


def _owned(value: Any) -> Any:
    """``value`` with every tensor inside (dicts, lists, tuples) copied out of the file's memory map."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _owned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_owned(v) for v in value)
    return value


def _parts(path: str, payload: Any) -> tuple[DrugBANConfig, Any, dict[str, Any]]:
    """(config, state_dict, extra entries) of a loaded file, our format or a bare reference state_dict."""
    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        raw = payload.get("config")
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"{path}: its config is a {type(raw).__name__}, not a mapping")
        try:
            config = DrugBANConfig.from_dict(raw)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: config: {str(exc).removeprefix('DrugBAN config: ')}") from None
        extra = {k: v for k, v in payload.items() if k not in ("format", "config", "state_dict")}
        return config, payload.get("state_dict"), extra
    if isinstance(payload, Mapping) and "bcn.h_mat_v" in payload:
        return DrugBANConfig(), payload, {}
    raise CheckpointError(f"{path}: neither a drugrepo DrugBAN checkpoint nor a reference DrugBAN state_dict")


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load our checkpoint or a bare reference ``state_dict`` (``weights_only=True``, memory-mapped).

    Checked before any tensor is built: the config against the format's bounds (`CONFIG_BOUNDS`,
    `MAX_PARAMETERS`), the state_dict's keys, shapes and dtypes against the config (`build_model`).
    Then the weights against the checkpoint id the file records: a file whose weights changed is refused.
    A bare reference state_dict records no id: it loads, with a warning that its weights are unverified
    (`import_reference_checkpoint` gives it one). Returns the model in eval mode, its id and config, and the
    extra entries (``checkpoint_id`` always among them), typed. Every refusal is a `CheckpointError` naming the file.
    """
    config, state_dict, extra = _parts(path, _read_checkpoint(path, map_location))
    try:
        model = build_model(config, state_dict, map_location)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    extra = _owned(extra)
    actual = checkpoint_id(model)
    if "checkpoint_id" not in extra:
        extra["checkpoint_id"] = actual
        log.warning(
            "%s: records no checkpoint id, so its weights are unverified "
            "(drugrepo import-checkpoint writes a copy that records one)",
            path,
        )
    elif (recorded := extra["checkpoint_id"]) != actual:
        raise CheckpointError(
            f"{path}: its weights do not match the checkpoint id it records ({recorded}, weights give {actual})"
        )
    return LoadedCheckpoint(model.eval(), actual, config, TrainingProvenance.of(extra), extra)


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_reference_checkpoint(source: str, out: str) -> str:
    """Write a bare reference DrugBAN state_dict ``source`` as our checkpoint ``out``; returns its checkpoint id.

    From then on the file records the id of its weights (and the source's SHA-256 under ``imported_from``),
    so `load_checkpoint` refuses a bit flip in it. A file already in our format is refused: it has an id.
    """
    payload = _read_checkpoint(source, "cpu")
    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: already a drugrepo checkpoint (it records its checkpoint id)")
    config, state_dict, _ = _parts(source, payload)
    try:
        model = build_model(config, state_dict)
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    save_checkpoint(out, model, imported_from={"file": Path(source).name, "sha256": file_sha256(source)})
    return checkpoint_id(model)
