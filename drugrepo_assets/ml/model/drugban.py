"""DrugBAN in plain torch, state_dict-compatible with the reference (peizhenbai/DrugBAN).

Module and parameter names mirror the reference, weight norm included (legacy ``weight_g`` /
``weight_v`` names), so a reference ``state_dict`` loads strictly with no conversion.

The function computed is the reference's: molecules padded to 290 nodes with virtual nodes
(features: 74 zeros and a 1), real atoms carrying two self-loops and virtual nodes one, a protein
CNN whose output is *reshaped* (not transposed) to [L, C] exactly as the reference does, and a
bilinear attention network with 2 heads followed by sum-pooling, BatchNorm and an MLP.

What differs is the cost, never the function:
- the virtual nodes of every molecule are one and the same row through the GCN (they only see
  their own self-loop), so the GCN runs on real atoms plus a single shared virtual row, and
  BatchNorm's batch statistics in training weight that row by the number of virtual nodes;
- the attention maps of the heads are summed before pooling (pooling is linear in the map), and
  in eval mode each molecule contributes its real rows plus one weighted virtual row, so a pair
  costs ~(atoms + 1) instead of 290 rows; where a protein meets many rows its Gram matrix
  ``q_ᵀ q_`` replaces the per-row products (see PERFORMANCE.md for the identity).
Attention maps are computed only on demand (:meth:`DrugBAN.attention_maps`).
Its config and the bounds on it are `ml.model.model_config`; its files, `ml.model.checkpoint`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drugrepo_assets.ml.features.featurize import GraphBatch
from drugrepo_assets.ml.model.model_config import DrugBANConfig


class WeightNormLinear(nn.Module):
    """Linear layer with whole-tensor weight norm (``weight_norm(..., dim=None)``), legacy names."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        base = nn.Linear(in_features, out_features)
        self.bias = nn.Parameter(base.bias.detach().clone())
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(base.weight.detach()))
        self.weight_v = nn.Parameter(base.weight.detach().clone())

    def weight(self) -> Tensor:
        """The effective weight g · v / ‖v‖."""
        return self.weight_v * (self.weight_g / torch.linalg.vector_norm(self.weight_v))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight(), self.bias)


def fcnet_eval(net: FCNet, h: Tensor, last: Tensor) -> Tensor:
    """``net`` in eval mode on the rows of ``h`` then the row ``last``, the bias inside the matrix product.

    The input gets a column of ones and the weight the bias as a column: addmm would first copy
    the bias into every output row, a full extra pass over v_net's [atoms, 768] output, the
    largest activation of the drug side.
    """
    linear = net.linear()
    weight = torch.cat([linear.weight(), linear.bias.unsqueeze(1)], 1)
    x = h.new_empty(len(h) + 1, h.shape[1] + 1)
    x[:-1, :-1] = h
    x[-1, :-1] = last
    x[:, -1] = 1
    return (x @ weight.T).relu_()


class FCNet(nn.Module):
    """Dropout → weight-normed Linear → ReLU, as the reference's ``FCNet([in, out])``."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Dropout(dropout), WeightNormLinear(in_dim, out_dim), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)

    def linear(self) -> WeightNormLinear:
        """The weight-normed Linear inside ``main`` (``main[1]``), typed: Sequential's items are plain Modules."""
        linear = self.main[1]
        if not isinstance(linear, WeightNormLinear):
            raise TypeError(f"FCNet.main[1] is a {type(linear).__name__}, not a WeightNormLinear")
        return linear


class GraphConv(nn.Module):
    """DGL ``GraphConv(norm='none')`` parameters: weight [in, out] and bias [out]."""

    def __init__(self, in_feats: int, out_feats: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_feats, out_feats))
        self.bias = nn.Parameter(torch.zeros(out_feats))
        nn.init.xavier_uniform_(self.weight)


class GCNLayer(nn.Module):
    """dgllife ``GCNLayer``: ReLU(GraphConv) + ReLU(residual Linear), then BatchNorm1d."""

    def __init__(self, in_feats: int, out_feats: int) -> None:
        super().__init__()
        self.graph_conv = GraphConv(in_feats, out_feats)
        self.res_connection = nn.Linear(in_feats, out_feats)
        self.bn_layer = nn.BatchNorm1d(out_feats)

    def forward(
        self, h: Tensor, u: Tensor, aggregate: Callable[[Tensor], Tensor], n_virtual: int
    ) -> tuple[Tensor, Tensor]:
        """One layer over real atoms ``h`` [N, C] and the shared virtual row ``u`` [C].

        ``aggregate`` (see `neighbourhood_sum`): a real atom sums its in-neighbours (dgllife's
        edges, its own self-loop among them) plus itself once more (the reference's second
        self-loop); a virtual node sees only itself.
        """
        w, b = self.graph_conv.weight, self.graph_conv.bias
        out = torch.addmm(b, aggregate(h), w).relu_() + self.res_connection(h).relu_()
        out_u = F.relu(u @ w + b) + F.relu(self.res_connection(u))
        return _batch_norm_with_virtual(out, out_u, n_virtual, self.bn_layer)


def _batch_norm_with_virtual(x: Tensor, v: Tensor, n_virtual: int, bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """BatchNorm1d over ``x`` ([N, C] or [B, C, L]) plus ``n_virtual`` copies of the column ``v`` [C].

    Equal to the reference's BatchNorm over the padded input with the copies materialised, in
    training (batch statistics, running-stat update) and in eval (running statistics).
    """
    if not (bn.training and bn.track_running_stats):
        return (
            F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps),
            F.batch_norm(v.unsqueeze(0), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)[0],
        )
    dims = [0] if x.dim() == 2 else [0, 2]
    shape = (1, -1) if x.dim() == 2 else (1, -1, 1)
    count = x.numel() // x.shape[1] + n_virtual
    mean = (x.sum(dims) + n_virtual * v) / count
    var = (((x - mean.reshape(shape)) ** 2).sum(dims) + n_virtual * (v - mean) ** 2) / count
    running_mean, running_var = _running_stats(bn)
    num_batches_tracked = bn.num_batches_tracked
    if num_batches_tracked is None:
        raise ValueError("a BatchNorm tracking running statistics has no num_batches_tracked")
    with torch.no_grad():
        num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(num_batches_tracked)
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * (count / (count - 1)))
    scale = bn.weight / torch.sqrt(var + bn.eps)
    shift = bn.bias - mean * scale
    return x * scale.reshape(shape) + shift.reshape(shape), v * scale + shift


def _running_stats(bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """``bn``'s running mean and variance; ValueError for a BatchNorm built without them (DrugBAN's all have them)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm built with track_running_stats=False has no running statistics")
    return bn.running_mean, bn.running_var


class GCN(nn.Module):
    """Stack of dgllife GCN layers (names ``gnn_layers.i``)."""

    def __init__(self, in_feats: int, hidden_feats: tuple[int, ...]) -> None:
        super().__init__()
        dims = (in_feats, *hidden_feats)
        self.gnn_layers = nn.ModuleList(GCNLayer(a, b) for a, b in itertools.pairwise(dims))

    def layers(self) -> list[GCNLayer]:
        """``gnn_layers`` typed: ModuleList's items are plain Modules."""
        layers: list[GCNLayer] = []
        for layer in self.gnn_layers:
            if not isinstance(layer, GCNLayer):
                raise TypeError(f"GCN.gnn_layers holds a {type(layer).__name__}, not a GCNLayer")
            layers.append(layer)
        return layers


class MolecularGCN(nn.Module):
    """Drug encoder: bias-free Linear 75→128, then the GCN; names as in the reference."""

    def __init__(self, config: DrugBANConfig) -> None:
        super().__init__()
        self.init_transform = nn.Linear(config.node_in_feats, config.node_in_embedding, bias=False)
        with torch.no_grad():
            self.init_transform.weight[-1].fill_(0)  # the reference zeroes this row at init
        self.gnn = GCN(config.node_in_embedding, config.hidden_feats)

    def forward(self, graphs: GraphBatch, n_virtual: int) -> tuple[Tensor, Tensor]:
        """Real-atom embeddings [N, C] and the shared virtual-node embedding [C]."""
        w = self.init_transform.weight
        h = graphs.node_feats.to(w.dtype) @ w[:, :-1].T  # real atoms: virtual flag 0
        u = w[:, -1]  # virtual nodes: 74 zeros and a 1
        aggregate = neighbourhood_sum(graphs.edge_index[0], graphs.edge_index[1], len(h), h.dtype)
        for layer in self.gnn.gnn_layers:
            h, u = layer(h, u, aggregate, n_virtual)
        return h, u


def neighbourhood_sum(src: Tensor, dst: Tensor, n: int, dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """``h ↦ h + Σ_{edges src→dst} h[src]`` at each dst, for ``n`` nodes.

    Without autograd it is one sparse CSR product (the adjacency is built once per batch and serves
    every layer), about twice as fast on CPU as the gather + scatter-add used in training (whose
    gradient is deterministic).
    """
    if torch.is_grad_enabled():
        return lambda h: h.index_add(0, dst, h[src])
    nodes = torch.arange(n, device=src.device)
    src, dst = torch.cat([src, nodes]), torch.cat([dst, nodes])  # the "+ h" as one more self-loop
    order = torch.argsort(dst, stable=True)
    rows = F.pad(torch.bincount(dst, minlength=n).cumsum(0), (1, 0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        adjacency = torch.sparse_csr_tensor(
            rows, src[order], torch.ones(len(src), dtype=dtype, device=src.device), (n, n), check_invariants=False
        )
    return lambda h: adjacency @ h


class ProteinCNN(nn.Module):
    """Protein encoder: embedding, 3 × (Conv1d → ReLU → BatchNorm), reshaped as the reference.

    The zero padding after a sequence gives a constant tail in every layer, so the convolutions
    run only over the longest sequence of the batch (plus the kernels' reach); the tail is one
    column, counted in BatchNorm's batch statistics as often as the padded positions it stands for.
    """

    def __init__(self, config: DrugBANConfig) -> None:
        super().__init__()
        self.max_length = config.max_protein_length
        self.embedding = nn.Embedding(26, config.protein_emb_dim, padding_idx=0)
        ch = (config.protein_emb_dim, *config.num_filters)
        k = config.kernel_size
        self.conv1 = nn.Conv1d(ch[0], ch[1], k[0])
        self.bn1 = nn.BatchNorm1d(ch[1])
        self.conv2 = nn.Conv1d(ch[1], ch[2], k[1])
        self.bn2 = nn.BatchNorm1d(ch[2])
        self.conv3 = nn.Conv1d(ch[2], ch[3], k[2])
        self.bn3 = nn.BatchNorm1d(ch[3])

    def forward(self, codes: Tensor, full_width: bool = False) -> Tensor:
        """[B, max_length] integer codes → [B, L', C] (L' = max_length − Σ(kernel − 1)).

        ``full_width`` runs the convolutions over all positions, as the reference does: the same
        function, with float32 rounding closest to the reference's (used for attention maps).
        """
        codes = codes.long()
        batch, full = codes.shape
        reach = sum(c.kernel_size[0] - 1 for c in (self.conv1, self.conv2, self.conv3))
        positions = torch.arange(1, full + 1, device=codes.device)
        longest = int(((codes != 0) * positions).amax()) if codes.numel() else 0
        width = full if full_width else min(full, longest + reach)
        x = self.embedding(codes[:, :width]).transpose(2, 1)
        tail = self.embedding.weight[0].detach()  # padding_idx=0: the padding row gets no gradient, as in the lookups
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            full -= conv.kernel_size[0] - 1
            x = F.relu(conv(x))
            tail = F.relu(conv.weight.sum(-1) @ tail + _conv_bias(conv))
            x, tail = _batch_norm_with_virtual(x, tail, batch * (full - x.shape[2]), bn)
        if x.shape[2] < full:
            x = torch.cat([x, tail.reshape(1, -1, 1).expand(batch, -1, full - x.shape[2])], 2)
        return x.reshape(batch, full, -1)  # the reference's view, not a transpose


def _conv_bias(conv: nn.Conv1d) -> Tensor:
    """``conv``'s bias; ValueError for a convolution built without one (ProteinCNN's all have one)."""
    if conv.bias is None:
        raise ValueError("ProteinCNN's convolutions need a bias")
    return conv.bias


class BANLayer(nn.Module):
    """Bilinear attention network with ``h_out`` heads (reference names, ``h_mat`` weight-normed)."""

    def __init__(self, v_dim: int, q_dim: int, h_dim: int, h_out: int, k: int, dropout: float) -> None:
        super().__init__()
        self.k = k
        self.h_out = h_out
        self.v_net = FCNet(v_dim, h_dim * k, dropout)
        self.q_net = FCNet(q_dim, h_dim * k, dropout)
        h_mat = torch.empty(1, h_out, 1, h_dim * k).normal_()
        self.h_bias = nn.Parameter(torch.empty(1, h_out, 1, 1).normal_())
        self.h_mat_g = nn.Parameter(torch.linalg.vector_norm(h_mat))  # registration order = reference's
        self.h_mat_v = nn.Parameter(h_mat)
        self.bn = nn.BatchNorm1d(h_dim)

    def h_mat(self) -> Tensor:
        """Per-head bilinear weights [heads, K] (g · v / ‖v‖ over the whole tensor)."""
        w = self.h_mat_v * (self.h_mat_g / torch.linalg.vector_norm(self.h_mat_v))
        return w.reshape(self.h_out, -1)

    def head_sums(self) -> tuple[Tensor, Tensor]:
        """``H = Σ_heads h`` [K] and ``B = Σ_heads bias`` (scalar): all that pooling needs."""
        return self.h_mat().sum(0), self.h_bias.sum()

    def pool(self, fusion: Tensor) -> Tensor:
        """Sum-pool groups of k features (the reference's AvgPool1d · k), then BatchNorm."""
        pooled = F.avg_pool1d(fusion.unsqueeze(1), self.k, stride=self.k).squeeze(1) * self.k
        return self.bn(pooled)


class MLPDecoder(nn.Module):
    """Reference MLP: 3 × (Linear → ReLU → BatchNorm), then Linear to one logit."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.bn2 = nn.BatchNorm1d(hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, out_dim)
        self.bn3 = nn.BatchNorm1d(out_dim)
        self.fc4 = nn.Linear(out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn1(F.relu(self.fc1(x)))
        x = self.bn2(F.relu(self.fc2(x)))
        x = self.bn3(F.relu(self.fc3(x)))
        return self.fc4(x)


def batch_norm_affine(bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """BatchNorm in eval mode as a scale and a shift: bn(x) = x · scale + shift (running statistics)."""
    running_mean, running_var = _running_stats(bn)
    scale = bn.weight / torch.sqrt(running_var + bn.eps)
    return scale, bn.bias - running_mean * scale


def _fold_batch_norm(bn: nn.BatchNorm1d, linear: nn.Linear) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``linear ∘ bn`` in eval mode, one affine map."""
    scale, shift = batch_norm_affine(bn)
    return linear.weight * scale, linear.bias + linear.weight @ shift


class EvalHead:
    """Eval-mode pooling, BatchNorms and MLP (`BANLayer.pool` then `MLPDecoder`) as four Linear maps.

    Each BatchNorm is folded into the Linear after it, so scoring many pairs spends no pass on
    BatchNorm or bias copies; the same function as ``mlp(bcn.pool(fusion))`` in eval mode, up to
    float32 rounding. Built from the weights as they are now: rebuild after training.
    """

    @torch.no_grad()
    def __init__(self, bcn: BANLayer, mlp: MLPDecoder) -> None:
        self.k = bcn.k
        self.layers = [
            _fold_batch_norm(bcn.bn, mlp.fc1),
            _fold_batch_norm(mlp.bn1, mlp.fc2),
            _fold_batch_norm(mlp.bn2, mlp.fc3),
            _fold_batch_norm(mlp.bn3, mlp.fc4),
        ]

    def __call__(self, fusion: Tensor) -> Tensor:
        """Logits [N] of fused features [N, K]."""
        x = fusion.reshape(len(fusion), -1, self.k).sum(-1)
        for i, (weight, bias) in enumerate(self.layers):
            x = torch.addmm(bias, x, weight.T)
            if i < len(self.layers) - 1:
                x.relu_()
        return x.squeeze(-1)


@dataclass
class DrugEncoding:
    """v_net rows of a batch of molecules in compact form.

    ``rows`` [N + 1, K]: the real atoms of all molecules, then the single virtual row shared by
    all; molecule ``i`` owns rows ``offsets[i]:offsets[i+1]`` plus the virtual row with
    multiplicity ``n_virtual[i]`` (290 − atoms).
    """

    rows: Tensor
    offsets: Tensor
    n_virtual: Tensor

    @property
    def row_sums(self) -> Tensor:
        """Each molecule's weighted row sum [B, K] (virtual row counted ``n_virtual`` times); computed once."""
        sums = self.__dict__.get("_row_sums")
        if sums is None:
            real = self.rows[:-1]
            sums = torch.segment_reduce(real, "sum", offsets=self.offsets, axis=0)
            sums = self.__dict__["_row_sums"] = sums + self.n_virtual.to(real.dtype).unsqueeze(1) * self.rows[-1]
        return sums

    @property
    def virtual_row(self) -> Tensor:
        """The v_net output of a virtual node, the same for every molecule."""
        return self.rows[-1]


def segment_ranges(starts: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """For segments ``[starts[i], starts[i] + counts[i])``: each element's segment id and index."""
    seg = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    first = F.pad(torch.cumsum(counts, 0), (1, 0))[:-1]
    idx = torch.arange(int(counts.sum()), device=counts.device) - first[seg] + starts[seg]
    return seg, idx


# Proteins encoded at once in eval: q_net's output is 1185 × 768 floats (3.6 MB) per protein, so
# larger chunks only spill out of cache.
PROTEIN_CHUNK = 32


def use_gram(drug_rows: int, protein_rows: int, dim: int) -> bool:
    """Whether a protein's Gram matrix (rows · dim² once, then dim² per drug row) is cheaper than
    two products per drug row (2 · rows · dim each)."""
    return drug_rows * (2 * protein_rows - dim) > protein_rows * dim


@dataclass
class ProteinEncoding:
    """q_net rows of proteins, compacted: the rows a sequence's padded tail repeats are kept once.

    After the reference's reshape of the CNN output, a row lying wholly in one channel's constant
    tail equals every other such row of that channel; it is stored once with ``weights`` = copies.
    Protein ``p`` owns rows ``offsets[p]:offsets[p+1]``.
    """

    rows: Tensor
    weights: Tensor
    offsets: Tensor

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def protein(self, p: int) -> tuple[Tensor, Tensor]:
        """Rows [R_p, K] and their multiplicities [R_p] of protein ``p``."""
        a, b = int(self.offsets[p]), int(self.offsets[p + 1])
        return self.rows[a:b], self.weights[a:b]


def tail_row_plan(lengths: Tensor, n_rows: int, row_width: int) -> tuple[Tensor, Tensor]:
    """Which reshaped CNN rows to keep [P, n_rows] and each kept row's multiplicity.

    The CNN output is [C, n_rows] per protein (channel-major); position ≥ the sequence length is
    the tail. The reference views it as [n_rows, C]: row r holds flat elements r·C … r·C + C − 1.
    """
    r = torch.arange(n_rows, device=lengths.device)
    first, last = r * row_width, r * row_width + row_width - 1
    channel = first // n_rows
    one_channel = channel == last // n_rows
    pure = one_channel & ((first - channel * n_rows).unsqueeze(0) >= lengths.unsqueeze(1))
    same_as_prev = F.pad(pure[:, :-1] & (channel[1:] == channel[:-1]), (1, 0))
    representative = pure & ~same_as_prev
    per_channel = torch.zeros(len(lengths), int(channel.max()) + 1, device=lengths.device)
    per_channel.scatter_add_(1, channel.expand(len(lengths), -1), pure.float())
    keep = ~pure | representative
    weights = torch.where(representative, per_channel[:, channel], torch.ones_like(per_channel[:, channel]))
    return keep, weights


class DrugBAN(nn.Module):
    """DrugBAN (Bai et al., 2023) with the reference's state_dict layout and function."""

    def __init__(self, config: DrugBANConfig | None = None) -> None:
        super().__init__()
        self.config = config or DrugBANConfig()
        c = self.config
        self.drug_extractor = MolecularGCN(c)
        self.protein_extractor = ProteinCNN(c)
        self.bcn = BANLayer(c.hidden_feats[-1], c.num_filters[-1], c.mlp_in_dim, c.ban_heads, c.ban_k, c.ban_dropout)
        self.mlp_classifier = MLPDecoder(c.mlp_in_dim, c.mlp_hidden_dim, c.mlp_out_dim)

    def virtual_counts(self, num_nodes: Tensor) -> Tensor:
        """Virtual (padding) nodes of each molecule: DrugBAN pads every molecule to ``max_drug_nodes``."""
        n_virtual = self.config.max_drug_nodes - num_nodes
        if bool((n_virtual < 0).any()):
            raise ValueError(f"a molecule has more than {self.config.max_drug_nodes} atoms; DrugBAN pads to that")
        return n_virtual

    def forward(self, graphs: GraphBatch, proteins: Tensor) -> Tensor:
        """Logits [B] for pairs (graph i, protein codes i); exact reference function in both modes."""
        if self.training:
            return self._forward_padded(graphs, proteins)
        drugs = self.encode_drugs(graphs)
        uniq, inverse = torch.unique(proteins, dim=0, return_inverse=True)
        fusion = drugs.rows.new_empty(len(inverse), drugs.rows.shape[1])
        for start in range(0, len(uniq), PROTEIN_CHUNK):
            q = self.encode_proteins(uniq[start : start + PROTEIN_CHUNK])
            idx = ((inverse >= start) & (inverse < start + len(q))).nonzero().squeeze(1)
            fusion[idx] = self.pair_fusion(drugs, idx, q, inverse[idx] - start)
        return self.mlp_classifier(self.bcn.pool(fusion)).squeeze(-1)

    def encode_drugs(self, graphs: GraphBatch) -> DrugEncoding:
        """Compact v_net rows of each molecule (eval mode: dropout is the identity)."""
        n_virtual = self.virtual_counts(graphs.num_nodes)
        h, u = self.drug_extractor(graphs, int(n_virtual.sum()))
        rows = fcnet_eval(self.bcn.v_net, h, u)
        offsets = F.pad(torch.cumsum(graphs.num_nodes, 0), (1, 0))
        return DrugEncoding(rows=rows, offsets=offsets, n_virtual=n_virtual)

    def virtual_drug_row(self) -> Tensor:
        """v_net's output for a virtual (padding) node in eval mode [K]: it sees only itself, so every molecule shares it."""
        u = self.drug_extractor.init_transform.weight[:, -1]
        for layer in self.drug_extractor.gnn.gnn_layers:
            _, u = layer(u.new_zeros(0, len(u)), u, lambda h: h, 0)
        return self.bcn.v_net(u.unsqueeze(0))[0]

    def encode_proteins(self, codes: Tensor) -> ProteinEncoding:
        """Compacted q_net rows of each protein (eval mode)."""
        x = self.protein_extractor(codes)
        positions = torch.arange(1, codes.shape[1] + 1, device=codes.device)
        lengths = ((codes != 0) * positions).amax(1)
        keep, weights = tail_row_plan(lengths, x.shape[1], x.shape[2])
        rows = self.bcn.q_net(x[keep])
        offsets = F.pad(torch.cumsum(keep.sum(1), 0), (1, 0))
        return ProteinEncoding(rows=rows, weights=weights[keep].to(rows.dtype), offsets=offsets)

    def pair_logits(self, drugs: DrugEncoding, drug_idx: Tensor, q: ProteinEncoding, protein_idx: Tensor) -> Tensor:
        """Logits of pairs (drug ``drug_idx[i]``, protein ``protein_idx[i]``) from encodings."""
        fusion = self.pair_fusion(drugs, drug_idx, q, protein_idx)
        return self.mlp_classifier(self.bcn.pool(fusion)).squeeze(-1)

    def pair_fusion(self, drugs: DrugEncoding, drug_idx: Tensor, q: ProteinEncoding, protein_idx: Tensor) -> Tensor:
        """BAN fusion before pooling [P, K], grouped by protein; no attention map is formed.

        fusion[k] = Σ_v w_v v[v,k] · ((v ⊙ H) qᵀ W q)[v,k] + B · sv[k] · (wᵀq)[k], with rows v the
        molecule's real atoms (weight 1) and its virtual row (weight 290 − atoms), rows q the
        protein's compacted rows with multiplicities W.
        """
        H, B = self.bcn.head_sums()
        dim = q.rows.shape[-1]
        out = q.rows.new_empty(len(drug_idx), dim)
        counts = drugs.offsets.diff()
        u = drugs.virtual_row
        for p in torch.unique(protein_idx).tolist():
            pairs = (protein_idx == p).nonzero().squeeze(1)
            mols = drug_idx[pairs]
            seg, row_idx = segment_ranges(drugs.offsets[mols], counts[mols])
            rows = torch.cat([drugs.rows[row_idx], u.unsqueeze(0)])
            qp, wq = q.protein(p)
            if use_gram(rows.shape[0], qp.shape[0], dim):
                proj = (rows * H) @ (qp.T @ (qp * wq.unsqueeze(1)))
            else:
                proj = (((rows * H) @ qp.T) * wq) @ qp
            prod = rows * proj
            fusion = torch.zeros(len(mols), dim, dtype=prod.dtype, device=prod.device)
            fusion.index_add_(0, seg, prod[:-1])
            fusion += drugs.n_virtual[mols].to(prod.dtype).unsqueeze(1) * prod[-1]
            fusion += B * drugs.row_sums[mols] * (wq @ qp)
            out[pairs] = fusion
        return out

    def _forward_padded(self, graphs: GraphBatch, proteins: Tensor) -> Tensor:
        """Training path: virtual rows materialised after the GCN so dropout samples each one."""
        n_virtual = self.virtual_counts(graphs.num_nodes)
        h, u = self.drug_extractor(graphs, int(n_virtual.sum()))
        table = torch.cat([h, u.unsqueeze(0)])
        v = self.bcn.v_net(table[self._padding_index(graphs)])
        q = self.bcn.q_net(self.protein_extractor(proteins))
        H, B = self.bcn.head_sums()
        proj = torch.bmm(torch.bmm(v * H, q.transpose(1, 2)), q)
        fusion = (v * proj).sum(1) + B * v.sum(1) * q.sum(1)
        return self.mlp_classifier(self.bcn.pool(fusion)).squeeze(-1)

    def _padding_index(self, graphs: GraphBatch) -> Tensor:
        """Index [B, 290] into (real atoms + virtual row) giving each molecule's padded node list."""
        n = graphs.num_nodes
        total = int(n.sum())
        pos = torch.arange(self.config.max_drug_nodes, device=n.device).unsqueeze(0)
        starts = F.pad(torch.cumsum(n, 0), (1, 0))[:-1].unsqueeze(1)
        return torch.where(pos < n.unsqueeze(1), starts + pos, torch.full_like(pos, total))

    @torch.no_grad()
    def attention_maps(self, graphs: GraphBatch, proteins: Tensor) -> Tensor:
        """The reference's attention maps [B, heads, 290, L'] (eval mode), for explaining pairs."""
        n_virtual = self.virtual_counts(graphs.num_nodes)
        h, u = self.drug_extractor(graphs, int(n_virtual.sum()))
        v = self.bcn.v_net(torch.cat([h, u.unsqueeze(0)])[self._padding_index(graphs)])
        q = self.bcn.q_net(self.protein_extractor(proteins, full_width=True))
        return torch.einsum("hk,bvk,bqk->bhvq", self.bcn.h_mat(), v, q) + self.bcn.h_bias.reshape(1, -1, 1, 1)
