"""Exact, fast screening: DrugBAN's logits for every (drug, target) of a library × a target set.

With ``v`` a drug's v_net rows (weights w: 1 per atom, 290 − atoms for the virtual row) and ``q`` a
target's q_net rows, the BAN's pooled feature before sum-pooling is

    fusion[k] = Σ_j H[j] · Gv[k, j] · Gq[k, j] + B · sv[k] · sq[k]

with Gv = vᵀ diag(w) v and Gq = qᵀ diag(m) q (768 × 768), sv, sq the weighted column sums, H and B
the heads' summed bilinear weights and biases (PERFORMANCE.md). Gv depends on the drug alone and
Gq on the target alone: each is computed once, and a pair then costs one 768² contraction and the
MLP, against ~3.2 GFLOP in the reference. The virtual rows' share of Gv, (290 − atoms) · u uᵀ for
the one virtual row u, contracts to a per-target vector once. The scores are the model's (eval
mode), not a proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from drugrepo_assets.data.rules import MAX_DRUG_ATOMS, PROTEIN_MAX_LENGTH, clean_protein, protein_refusal
from drugrepo_assets.data.sandbox import Sandbox
from drugrepo_assets.ml.features.dataset import MoleculeStore
from drugrepo_assets.ml.features.featurize import CompactMolecules, compact_molecules
from drugrepo_assets.ml.model.drugban import DrugBAN, DrugEncoding, EvalHead
from drugrepo_assets.screening.native import fusion_kernel, kernel_supports, pack_gcn, pack_linear, pack_targets
from drugrepo_assets.screening.native import screen as native_screen
from drugrepo_assets.screening.scores import ShardScores, rank_top


def symmetric(gram: Tensor) -> Tensor:
    """A Gram matrix made exactly symmetric from its upper triangle: floating-point matmul leaves the two
    halves a rounding apart, and the stored terms keep one half (`screening.terms`), so computed and
    stored terms give the same bits."""
    upper = torch.triu(gram)
    return upper + torch.triu(gram, 1).T


PAIRS_PER_CALL = 8_192
"""Pairs scored per engine call when the targets are many (`ScreeningEngine.drugs_per_call`)."""

DRUG_CHUNK = 1024
"""Molecules scored at once by default (`ScreeningEngine`'s ``drug_chunk``; ``drugrepo screen --batch-size``)."""


@dataclass
class TargetTerms:
    """Per-target terms: the Gram matrices ``gq`` = Gq [T, K, K] (symmetric) and ``sq`` [T, K]."""

    gq: Tensor
    sq: Tensor

    def packed(self) -> Tensor:
        """``gq`` in the CPU kernel's tile order (computed once per object, see `native.pack_targets`)."""
        cached = self.__dict__.get("_packed")
        if cached is None:
            cached = self.__dict__["_packed"] = pack_targets(self.gq)
        return cached

    def times(self, vector: Tensor) -> Tensor:
        """Gq · ``vector`` for every target [T, K] (computed once per object and vector)."""
        cached = self.__dict__.get("_times")
        if cached is None or cached[0] is not vector:
            cached = self.__dict__["_times"] = (vector, self.gq @ vector)
        return cached[1]

    def for_kernel(self, vector: Tensor) -> TargetTerms:
        """These terms as the C kernel alone reads them: packed, Gq · ``vector`` kept, Gq itself dropped
        (its memory, 2.4 MB a target, is held once instead of twice)."""
        packed, times = self.packed(), self.times(vector)
        lean = TargetTerms(gq=self.gq.new_zeros(0), sq=self.sq)
        lean.__dict__["_packed"], lean.__dict__["_times"] = packed, (vector, times)
        return lean


@dataclass
class MoleculeChunk:
    """Molecules ``idx`` of a store as the C kernel takes them (it runs the GCN and v_net itself),
    with their virtual-node counts and v_net's virtual row [K]."""

    molecules: MoleculeStore
    idx: Tensor
    n_virtual: Tensor
    virtual_row: Tensor


DrugTerms = MoleculeChunk | DrugEncoding
"""A chunk of molecules as the engine holds them: a `MoleculeChunk` for the C kernel, or compact
v_net rows for the torch path (`model.DrugEncoding`)."""


class ScreeningEngine:
    """Scores libraries against targets with a DrugBAN model, in drug and target chunks.

    On CPU a C kernel (`native`) runs each molecule's GCN and v_net and contracts its Gram matrix
    with the targets' terms, never storing it; on CUDA (or without a C compiler, or for layer
    widths the kernel does not take) the same identity runs as torch batched matmuls, the drug's
    Gram matrix (K² floats, 2.4 MB at K = 768) held per chunk. ``drug_chunk`` bounds the
    molecules scored at once, ``target_chunk`` the targets' terms held at once (each 2 × K²
    floats on CPU).
    """

    def __init__(
        self,
        model: DrugBAN,
        device: str | torch.device = "cpu",
        drug_chunk: int = DRUG_CHUNK,
        target_chunk: int = 64,
        native: bool | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.drug_chunk = drug_chunk
        self.target_chunk = target_chunk
        H, B = self.model.bcn.head_sums()
        self._H = H.detach()
        self._B = B.detach()
        self._head = EvalHead(self.model.bcn, self.model.mlp_classifier)
        linear = self.model.bcn.v_net.linear()
        on_cpu = self.device.type == "cpu"
        supported = kernel_supports(self.model.drug_extractor, linear.weight().shape[0])
        self._kernel = fusion_kernel() if on_cpu and supported and native is not False else None
        if native and self._kernel is None:
            raise RuntimeError("the native screening kernel is not available for this model/device/machine")
        if self._kernel is not None:
            with torch.no_grad():
                self._gcn = pack_gcn(self.model.drug_extractor)
                self._vnet = pack_linear(linear.weight(), linear.bias)
                self._virtual_row = self.model.virtual_drug_row()
                self._hu = self._H * self._virtual_row  # the virtual rows' share reads Gq only through Gq · (H ⊙ u)

    def held(self, targets: TargetTerms) -> TargetTerms:
        """Terms as this engine holds them across calls: lean for the C kernel (`TargetTerms.for_kernel`)."""
        return targets.for_kernel(self._hu) if self._kernel is not None else targets

    def drugs_per_call(self, targets: int) -> int:
        """Molecules scored in one call against ``targets`` targets: ``drug_chunk``, fewer when the targets are
        many, so a call's [molecules × targets × K] fusion and the head's activations stay within
        `PAIRS_PER_CALL` pairs (about 60 MB at K = 768) whatever the target count."""
        return max(16, min(self.drug_chunk, PAIRS_PER_CALL // max(1, targets)))

    @property
    def term_width(self) -> int:
        """K, the width of the BAN's joint space: a target's terms are Gq [K, K] and sq [K]."""
        return len(self._H)

    @property
    def native(self) -> bool:
        """Whether pairs are scored by the C kernel (CPU) rather than torch matmuls."""
        return self._kernel is not None

    @torch.no_grad()
    def target_terms(self, codes: Tensor) -> TargetTerms:
        """Gq and sq of each target (protein codes [T, L])."""
        enc = self.model.encode_proteins(codes.to(self.device))
        gq, sq = [], []
        for p in range(len(enc)):
            q, m = enc.protein(p)
            qm = q * m.unsqueeze(1)
            gq.append(symmetric(q.T @ qm))
            sq.append(qm.sum(0))
        return TargetTerms(gq=torch.stack(gq), sq=torch.stack(sq))

    @torch.no_grad()
    def score_terms(self, molecules: CompactMolecules, targets: TargetTerms) -> np.ndarray:
        """Logits [molecules, targets] of compact molecules against targets given by their terms
        (at most ``target_chunk`` of them: the caller holds them), ``drug_chunk`` molecules at a time."""
        out = np.empty((len(molecules), len(targets.sq)), dtype=np.float32)
        order = np.argsort(molecules.num_atoms, kind="stable")  # similar sizes share a chunk: less padding
        step = self.drugs_per_call(len(targets.sq))
        for d0 in range(0, len(molecules), step):
            idx = order[d0 : d0 + step]
            store = MoleculeStore.from_compact(molecules.take(idx))
            out[idx] = self.pair_logits(self.drug_terms(store, torch.arange(len(idx))), targets).float().cpu().numpy()
        return out

    @torch.no_grad()
    def drug_terms(self, molecules: MoleculeStore, idx: Tensor) -> DrugTerms:
        """The terms of molecules ``idx`` of a store: as they lie for the C kernel, or one GCN + v_net pass (torch path)."""
        if self._kernel is not None:
            n_virtual = self.model.virtual_counts(molecules.num_nodes[idx])
            return MoleculeChunk(molecules=molecules, idx=idx, n_virtual=n_virtual, virtual_row=self._virtual_row)
        return self.model.encode_drugs(molecules.batch(idx).to(self.device))

    @torch.no_grad()
    def pair_logits(self, drugs: DrugTerms, targets: TargetTerms) -> Tensor:
        """Logits [D, T] of every drug against every target from their terms."""
        u = drugs.virtual_row
        n_virtual = drugs.n_virtual.to(u.dtype)
        if isinstance(drugs, MoleculeChunk):
            if self._kernel is None:
                raise RuntimeError("molecules laid out for the C kernel, but this engine runs the torch path")
            fusion, real_sums = native_screen(
                self._kernel,
                drugs.molecules,
                drugs.idx,
                self._gcn,
                self._vnet,
                targets.packed(),
                self._H,
                torch.get_num_threads(),
            )
            row_sums = real_sums + n_virtual.unsqueeze(1) * u
        else:
            fusion, row_sums = self._torch_fusion(drugs, targets), drugs.row_sums
        # the virtual rows' share, n_virtual · u uᵀ in each Gram matrix: one matvec per target
        hu = self._hu if isinstance(drugs, MoleculeChunk) else self._H * u
        virtual = u * targets.times(hu)  # [T, K]
        fusion.addcmul_(n_virtual[:, None, None], virtual.unsqueeze(0))
        fusion.addcmul_(self._B * row_sums.unsqueeze(1), targets.sq.unsqueeze(0))
        d, t, k = fusion.shape
        return self._head(fusion.reshape(d * t, k)).reshape(d, t)

    def _torch_fusion(self, drugs: DrugEncoding, targets: TargetTerms) -> Tensor:
        """Σ_j Gv[k, j] · Gq[t, k, j] · H[j] over the real atoms' Gram matrices, as batched matmuls [D, T, K]."""
        n = drugs.offsets.diff()
        width = int(n.max())
        pos = torch.arange(width, device=self.device).unsqueeze(0)
        real = pos < n.unsqueeze(1)
        index = torch.where(real, drugs.offsets[:-1].unsqueeze(1) + pos, torch.zeros_like(pos))
        v = drugs.rows[index] * real.unsqueeze(2).to(drugs.rows.dtype)  # [D, width, K], zero padding
        gv = torch.bmm(v.transpose(1, 2), v).permute(1, 0, 2)  # [K, D, J]
        gqh = targets.gq * self._H  # Gq ⊙ H, H along the second axis
        return torch.bmm(gv, gqh.permute(1, 2, 0)).permute(1, 2, 0)  # [D, T, K]

    def iter_scores(
        self, molecules: MoleculeStore, target_codes: Tensor, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[np.ndarray, slice, np.ndarray]]:
        """Yield (molecule ids [d], target slice, logits [d, t]) over the whole library × targets.

        The outer loop runs over target chunks so memory stays bounded for any number of targets;
        ``progress`` is called with the number of pairs scored after each block.
        """
        n_drugs = len(molecules)
        order = torch.argsort(molecules.num_nodes, stable=True)  # similar sizes share a chunk: less padding
        for t0 in range(0, len(target_codes), self.target_chunk):
            t_slice = slice(t0, min(t0 + self.target_chunk, len(target_codes)))
            targets = self.target_terms(target_codes[t_slice])
            for d0 in range(0, n_drugs, self.drug_chunk):
                idx = order[d0 : d0 + self.drug_chunk]
                logits = self.pair_logits(self.drug_terms(molecules, idx), targets).float().cpu().numpy()
                yield idx.numpy(), t_slice, logits
                if progress is not None:
                    progress(len(idx) * (t_slice.stop - t_slice.start))

    def target_chunks(self, target_codes: Tensor) -> list[slice]:
        """The target slices scored together (``target_chunk`` targets' terms held at once)."""
        n = len(target_codes)
        return [slice(t0, min(t0 + self.target_chunk, n)) for t0 in range(0, n, self.target_chunk)]

    def score_compact(
        self, molecules: CompactMolecules, target_codes: Tensor, terms: Sequence[TargetTerms] | None = None
    ) -> np.ndarray:
        """Logits [molecules, targets] of compact molecules, expanded ``drug_chunk`` at a time.

        ``terms``: the targets' terms per `target_chunks` slice, when the caller keeps them across
        calls (a library's shards); else they are computed here.
        """
        out = np.empty((len(molecules), len(target_codes)), dtype=np.float32)
        order = np.argsort(molecules.num_atoms, kind="stable")  # similar sizes share a chunk: less padding
        for j, t_slice in enumerate(self.target_chunks(target_codes)):
            targets = terms[j] if terms is not None else self.target_terms(target_codes[t_slice])
            for d0 in range(0, len(molecules), self.drug_chunk):
                idx = order[d0 : d0 + self.drug_chunk]
                store = MoleculeStore.from_compact(molecules.take(idx))
                drugs = self.drug_terms(store, torch.arange(len(idx)))
                out[idx, t_slice] = self.pair_logits(drugs, targets).float().cpu().numpy()
        return out

    def score_matrix(self, molecules: MoleculeStore, target_codes: Tensor) -> np.ndarray:
        """All logits as a dense [drugs, targets] float32 array (for libraries that fit in memory)."""
        out = np.empty((len(molecules), len(target_codes)), dtype=np.float32)
        for drug_ids, t_slice, logits in self.iter_scores(molecules, target_codes):
            out[drug_ids, t_slice] = logits
        return out


def rank_table(
    logits: np.ndarray,
    drug_ids: Sequence[str],
    smiles: Sequence[str],
    target_ids: Sequence[str],
    checkpoint_id: str,
    top: int | None = None,
) -> pd.DataFrame:
    """The ranked score table (`scores.score_table`) of a [drugs, targets] logit matrix; ``top`` keeps the best k per target.

    The matrix is a library of one shard, so its table is that shard's best rows merged (`scores.rank_top`):
    the in-memory and the streamed screens rank through the same code.
    """
    n = len(drug_ids)
    k = n if top is None else top
    shard = ShardScores(np.asarray(drug_ids, dtype=object), np.asarray(smiles, dtype=object), logits, target_ids)
    return rank_top([shard.top(k).assign(shard=0)], target_ids, n, k, checkpoint_id)


@dataclass
class Prepared:
    """Inputs ready to screen: kept entries (in input order) and refused ones with a reason."""

    kept: pd.DataFrame
    rejected: pd.DataFrame


def prepare_library(
    library: pd.DataFrame, max_atoms: int = MAX_DRUG_ATOMS, sandbox: Sandbox | None = None
) -> tuple[MoleculeStore, Prepared]:
    """Featurise each library molecule once, in ``sandbox`` (a `data.sandbox.molecule_sandbox`; else the
    process's shared one); molecules the input rules refuse (`data.rules`, a lone atom or ion
    included: `rules.candidate_refusal`) or over their budget are kept out with the reason."""
    molecules, reasons, _ = compact_molecules(
        library["smiles"].astype(str).tolist(), max_atoms, library=True, sandbox=sandbox
    )
    refused = [i for i, _ in reasons]
    kept = np.setdiff1d(np.arange(len(library)), refused)
    rejected = library.iloc[refused].assign(reason=[r for _, r in reasons])
    return MoleculeStore.from_compact(molecules), Prepared(
        kept=library.iloc[kept].reset_index(drop=True), rejected=rejected
    )


def prepare_targets(targets: pd.DataFrame, max_length: int = PROTEIN_MAX_LENGTH) -> tuple[Tensor, Prepared]:
    """Encode each target sequence; sequences the input rules refuse (`data.rules.protein_refusal`) are kept out with the reason."""
    from drugrepo_assets.ml.features.protein import encode_proteins

    raw = targets["sequence"].astype(str)
    reasons = {i: str(r) for i, seq in enumerate(raw) if (r := protein_refusal(seq)) is not None}
    keep = [i for i in range(len(targets)) if i not in reasons]
    codes = torch.from_numpy(encode_proteins([clean_protein(raw.iat[i]) for i in keep], max_length))
    rejected = targets.iloc[list(reasons)].assign(reason=list(reasons.values()))
    return codes, Prepared(kept=targets.iloc[keep].reset_index(drop=True), rejected=rejected)
