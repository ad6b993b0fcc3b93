"""What a DrugBAN config is and what the checkpoint format lets it declare (`DrugBANConfig` and its bounds).

A config outside the bounds is refused when it is built, so a checkpoint is refused on its config before
any tensor is made (`ml.model.checkpoint.build_model`); the network itself is `ml.model.drugban.DrugBAN`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from drugrepo_assets.data.rules import MAX_DRUG_ATOMS, PROTEIN_MAX_LENGTH
from drugrepo_assets.ml.features.featurize import ATOM_FEATURE_DIM

# What a checkpoint's config may declare: each size field's bounds, generously above DrugBAN's
# published configs (widths 128 to 512, 3 GCN layers, kernels 3/6/9, 2 heads, k 3, 1,200 residues,
# 1.08 M parameters), so that a file is refused on its config before any tensor is built.
NODE_IN_FEATS = ATOM_FEATURE_DIM + 1
"""Atom features the model reads: the featuriser's 74 and the virtual-node flag; a checkpoint declares exactly this."""
MAX_WIDTH = 2048
"""Widest layer a checkpoint may declare (embeddings, GCN and CNN channels, BAN and MLP widths): 4× the reference's 512."""
MAX_GCN_LAYERS = 16
"""Most GCN layers (the reference has 3)."""
MAX_KERNEL_SIZE = 64
"""Widest protein convolution (the reference's are 3, 6 and 9)."""
MAX_BAN_HEADS = 32
"""Most bilinear attention heads (the reference has 2)."""
MAX_BAN_K = 16
"""Largest BAN pooling factor k (the reference's is 3)."""
MAX_PROTEIN_LENGTH = 5000
"""Longest protein window a model reads (the reference's is 1,200 residues)."""
MAX_PARAMETERS = 64_000_000
"""Most parameters a checkpoint's config may imply (the reference has 1.08 M; 64 M are 256 MB in float32)."""

CONFIG_BOUNDS: dict[str, tuple[int, int]] = {
    "node_in_feats": (NODE_IN_FEATS, NODE_IN_FEATS),
    "node_in_embedding": (1, MAX_WIDTH),
    "hidden_feats": (1, MAX_WIDTH),
    "protein_emb_dim": (1, MAX_WIDTH),
    "num_filters": (1, MAX_WIDTH),
    "kernel_size": (1, MAX_KERNEL_SIZE),
    "mlp_in_dim": (1, MAX_WIDTH),
    "mlp_hidden_dim": (1, MAX_WIDTH),
    "mlp_out_dim": (1, MAX_WIDTH),
    "ban_heads": (1, MAX_BAN_HEADS),
    "ban_k": (1, MAX_BAN_K),
    "max_drug_nodes": (1, MAX_DRUG_ATOMS),
    "max_protein_length": (1, MAX_PROTEIN_LENGTH),
}
"""(least, most) of each integer field of `DrugBANConfig`, and of each entry of its tuple fields."""
CONFIG_LENGTHS: dict[str, tuple[int, int]] = {
    "hidden_feats": (1, MAX_GCN_LAYERS),
    "num_filters": (3, 3),
    "kernel_size": (3, 3),
}
"""(least, most) entries of the tuple fields of `DrugBANConfig` (the protein CNN has exactly three layers)."""


def _bound_problem(name: str, value: object, least: int, most: int) -> str | None:
    """Why an integer config value is refused (not an integer, outside [least, most]), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} = {value!r} is not an integer"
    if least == most and value != least:
        return f"{name} = {value} must be {least}"
    if value > most:
        return f"{name} = {value} is above the format's maximum of {most}"
    if value < least:
        return f"{name} = {value} is below the minimum of {least}"
    return None


@dataclass(frozen=True)
class DrugBANConfig:
    """Hyperparameters of DrugBAN; the defaults are the reference's configs/DrugBAN.yaml."""

    node_in_feats: int = 75
    node_in_embedding: int = 128
    hidden_feats: tuple[int, ...] = (128, 128, 128)
    protein_emb_dim: int = 128
    num_filters: tuple[int, ...] = (128, 128, 128)
    kernel_size: tuple[int, ...] = (3, 6, 9)
    mlp_in_dim: int = 256
    mlp_hidden_dim: int = 512
    mlp_out_dim: int = 128
    ban_heads: int = 2
    ban_k: int = 3
    ban_dropout: float = 0.2
    max_drug_nodes: int = MAX_DRUG_ATOMS
    max_protein_length: int = PROTEIN_MAX_LENGTH

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise ValueError(f"DrugBAN config: {problem}")

    def problem(self) -> str | None:
        """Why this config is outside what the format allows (`CONFIG_BOUNDS`, `CONFIG_LENGTHS`), or None."""
        for name, (least, most) in CONFIG_BOUNDS.items():
            value = getattr(self, name)
            if name in CONFIG_LENGTHS:
                if not isinstance(value, tuple):
                    return f"{name} = {value!r} is not a list"
                shortest, longest = CONFIG_LENGTHS[name]
                if not shortest <= len(value) <= longest:
                    return f"{name} has {len(value)} entries; the format allows {shortest} to {longest}"
                found = (_bound_problem(f"{name}[{i}]", v, least, most) for i, v in enumerate(value))
                problem = next((p for p in found if p is not None), None)
            else:
                problem = _bound_problem(name, value, least, most)
            if problem is not None:
                return problem
        dropout = self.ban_dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            return f"ban_dropout = {dropout!r} is not a number in [0, 1)"
        reach = sum(k - 1 for k in self.kernel_size)
        if self.max_protein_length <= reach:
            return (
                f"max_protein_length = {self.max_protein_length} leaves nothing after the convolutions (reach {reach})"
            )
        return None

    @classmethod
    def of_width(cls, width: int) -> DrugBANConfig:
        """The reference's shape with every layer scaled to ``width`` (the reference is ``of_width(128)``: embeddings,
        GCN and CNN channels ``width``, BAN ``2 * width``, MLP ``4 * width`` then ``width``), e.g. a small model for
        smoke runs where the size proves nothing."""
        layers = (width,) * 3
        return cls(
            node_in_embedding=width,
            hidden_feats=layers,
            protein_emb_dim=width,
            num_filters=layers,
            mlp_in_dim=2 * width,
            mlp_hidden_dim=4 * width,
            mlp_out_dim=width,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed dict (lists, ints, floats) that ``torch.load(weights_only=True)`` accepts."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DrugBANConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos do not pass silently."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DrugBAN config keys: {sorted(unknown)}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)
