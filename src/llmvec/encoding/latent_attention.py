"""NV-Embed latent-attention pooling (Lee et al., 2024).

Each token state is a query that attends to a trainable array of latents (the keys and values),
the result passes through a GEGLU MLP, both with pre-LayerNorm and residual connections, and the
token outputs are averaged over the pooling mask (text tokens only: no padding, no instruction).
Tokens never attend to each other here, so padding and batch mates cannot change a vector.

The parameter names follow NV-Embed's ``latent_attention_model`` so its weights load directly
(the ``latent_attention_model.`` prefix is stripped when present). Weights are safetensors only.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from llmvec.encoding import pooling
from llmvec.validation import check_positive

logger = logging.getLogger(__name__)

DEFAULT_LATENTS = 512
DEFAULT_HEADS = 8
MLP_RATIO = 4
_NV_EMBED_PREFIX = "latent_attention_model."
_HEADS_METADATA = "num_heads"


class _CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` over a context (the latents), no biases."""

    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        inner = num_heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        keys, values = self.to_kv(context).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(
            self._split_heads(self.to_q(x)), self._split_heads(keys), self._split_heads(values)
        )
        batch, _, length, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))  # type: ignore[no-any-return]


class _GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, gates = x.chunk(2, dim=-1)
        return values * F.gelu(gates)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, ratio: int = MLP_RATIO) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * ratio * 2), _GEGLU(), nn.Linear(dim * ratio, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class _PreNormAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.fn = _CrossAttention(dim, num_heads, head_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x), self.norm_context(context))  # type: ignore[no-any-return]


class _PreNormFeedForward(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = _FeedForward(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))  # type: ignore[no-any-return]


class LatentAttentionPooling(nn.Module):
    """Latent-attention pooling head: ``(batch, seq, dim)`` states -> ``(batch, dim)`` vectors.

    Args:
        dim: hidden size of the model's states (and of the latents and output).
        num_latents: rows of the latent array (NV-Embed: 512).
        num_heads: attention heads (NV-Embed: 8).
        head_dim: width of one head; ``None`` gives ``dim // num_heads`` (NV-Embed uses ``dim``).
    """

    def __init__(
        self,
        dim: int,
        num_latents: int = DEFAULT_LATENTS,
        num_heads: int = DEFAULT_HEADS,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_latents", num_latents), ("num_heads", num_heads)):
            check_positive(name, value)
        head_dim = dim // num_heads if head_dim is None else head_dim
        if head_dim < 1:
            raise ValueError(
                f"head_dim must be positive, got {head_dim} (dim={dim}, heads={num_heads})"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.cross_attend_blocks = nn.ModuleList(
            [_PreNormAttention(dim, num_heads, head_dim), _PreNormFeedForward(dim)]
        )
        #: Identity of the weights for an EmbeddingSpec (a file fingerprint, or the random seed).
        self.identity = "untrained"

    def token_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """Per-token outputs (before pooling): attention to the latents, then the MLP."""
        attend, feed_forward = self.cross_attend_blocks
        hidden = hidden.to(self.latents.dtype)
        latents = self.latents.expand(hidden.shape[0], -1, -1)
        hidden = attend(hidden, latents) + hidden
        return feed_forward(hidden) + hidden  # type: ignore[no-any-return]

    def forward(self, hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """Pooled vectors: the mean of the token outputs over ``pool_mask``."""
        if hidden.shape[-1] != self.dim:
            raise ValueError(
                f"latent-attention head of dimension {self.dim} got states of dimension "
                f"{hidden.shape[-1]}"
            )
        return pooling.mean(self.token_states(hidden), pool_mask)

    @classmethod
    def random(
        cls,
        dim: int,
        seed: int = 0,
        num_latents: int = DEFAULT_LATENTS,
        num_heads: int = DEFAULT_HEADS,
        head_dim: int | None = None,
    ) -> LatentAttentionPooling:
        """An untrained head with reproducible weights (the global RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = cls(dim, num_latents, num_heads, head_dim)
        head.identity = f"random-seed-{seed}"
        return head.eval()

    def save(self, path: str | Path) -> None:
        """Write the weights as safetensors (with the head count in the metadata)."""
        state = {key: value.detach().contiguous() for key, value in self.state_dict().items()}
        save_file(state, str(path), metadata={_HEADS_METADATA: str(self.num_heads)})

    @classmethod
    def load(
        cls, path: str | Path, dim: int | None = None, num_heads: int | None = None
    ) -> LatentAttentionPooling:
        """Load a head saved by :meth:`save` or NV-Embed's ``latent_attention_model`` weights.

        Sizes come from the tensors; ``num_heads`` from the file's metadata, else the argument,
        else 8. ``dim`` (the model's hidden size), when given, must match the weights.
        """
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(
                f"latent-attention weights must be a .safetensors file, got {str(path)!r}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"latent-attention weights {str(path)!r} do not exist")
        state = {
            key.removeprefix(_NV_EMBED_PREFIX): value for key, value in load_file(path).items()
        }
        if "latents" not in state:
            raise ValueError(
                f"{str(path)!r} holds no 'latents' tensor; it is not a latent-attention head "
                f"(keys: {sorted(state)[:5]}...)"
            )
        num_latents, weights_dim = state["latents"].shape
        if dim is not None and dim != weights_dim:
            raise ValueError(
                f"latent-attention weights {str(path)!r} are for dimension {weights_dim}, but the "
                f"model's hidden size is {dim}"
            )
        with safe_open(str(path), framework="pt") as handle:
            stored_heads = (handle.metadata() or {}).get(_HEADS_METADATA)
        heads = int(stored_heads) if stored_heads else (num_heads or DEFAULT_HEADS)
        inner = state["cross_attend_blocks.0.fn.to_q.weight"].shape[0]
        head = cls(int(weights_dim), int(num_latents), heads, inner // heads)
        head.load_state_dict(state, strict=True)
        head.identity = _file_identity(path)
        return head.eval()


def _file_identity(path: Path) -> str:
    """A content fingerprint of one weights file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def build_head(dim: int, weights: str | Path | None) -> LatentAttentionPooling:
    """The head for an encoder: loaded from ``weights``, or random (seed 0) with a warning."""
    if weights is None:
        logger.warning(
            "pooling='latent_attention' without latent_attention_weights: using an untrained, "
            "randomly initialised head (seed 0); load trained weights for meaningful vectors"
        )
        return LatentAttentionPooling.random(dim)
    return LatentAttentionPooling.load(weights, dim=dim)
