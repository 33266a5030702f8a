"""SkyTNT's MIDIModel (two Llama stacks and a head) in plain torch.

Plain torch instead of `transformers` keeps the train extra small and makes the ONNX graphs easy to
read; parameter names follow Hugging Face's `LlamaModel` (`net.layers.0.self_attn.q_proj.weight`, ...)
so a SkyTNT checkpoint's state dict loads with `load_state_dict` as it is.

Every forward takes an explicit key/value cache (a list of `(key, value)` per layer, each
(batch, heads, past, head_dim), possibly past = 0) and returns the grown one. That one code path
serves training (empty cache), the KV-cache export and the legacy export, so the three cannot drift.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

KVCache = list[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class LlamaSpec:
    """The LlamaConfig fields SkyTNT sets; the rest are transformers 4.44 defaults, kept as fields."""

    vocab_size: int
    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    intermediate_size: int
    pad_token_id: int = 0
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers",
                     "intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_hf_dict(self) -> dict[str, object]:
        """The LlamaConfig dict as `transformers` writes it, so SkyTNT's code can read our config.json."""
        d: dict[str, object] = dict(asdict(self))
        d.update(model_type="llama", architectures=None, hidden_act="silu", num_key_value_heads=
                 self.num_attention_heads, head_dim=self.head_dim, attention_bias=False, mlp_bias=False,
                 attention_dropout=0.0, initializer_range=0.02, pretraining_tp=1, rope_scaling=None,
                 tie_word_embeddings=False, use_cache=False, bos_token_id=1, eos_token_id=2)
        return d


def skytnt_specs(vocab_size: int, n_layer: int, n_head: int, n_embd: int, n_inner: int,
                 token_layers: int | None = None, token_heads: int | None = None,
                 token_inner: int | None = None) -> tuple[LlamaSpec, LlamaSpec]:
    """SkyTNT's `get_config` rule (token model = a quarter of the base), overridable for tiny models
    where a quarter rounds to zero."""
    net = LlamaSpec(vocab_size, n_embd, n_head, n_layer, n_inner)
    tok = LlamaSpec(vocab_size, n_embd, token_heads or n_head // 4, token_layers or n_layer // 4,
                    token_inner or n_inner // 4)
    return net, tok


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        e, h, d = spec.hidden_size, spec.num_attention_heads, spec.head_dim
        self.heads, self.head_dim = h, d
        self.q_proj = nn.Linear(e, h * d, bias=False)
        self.k_proj = nn.Linear(e, h * d, bias=False)
        self.v_proj = nn.Linear(e, h * d, bias=False)
        self.o_proj = nn.Linear(h * d, e, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor,
                past: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, n, _ = x.shape
        q, k, v = (p(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = torch.cat((past[0], k), dim=2)
        v = torch.cat((past[1], v), dim=2)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(mask, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1)), (k, v)


class DecoderLayer(nn.Module):
    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        self.self_attn = Attention(spec)
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.mlp.up_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.mlp.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor,
                past: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)
        x = x + a
        h = self.post_attention_layernorm(x)
        m = self.mlp
        return x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h)), present


class LlamaStack(nn.Module):
    """`LlamaModel` on input embeddings: decoder layers plus final norm; no LM head."""

    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size, padding_idx=spec.pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(spec.num_hidden_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        d = spec.head_dim
        inv_freq = 1.0 / (spec.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def empty_cache(self, batch: int) -> KVCache:
        s = self.spec
        z = torch.zeros(batch, s.num_attention_heads, 0, s.head_dim)
        return [(z, z) for _ in range(s.num_hidden_layers)]

    def forward(self, h: Tensor, past: KVCache) -> tuple[Tensor, KVCache]:
        # Positions continue after the cache and the causal mask is built from them, so a call with
        # n new positions equals the last n positions of a call on the whole sequence.
        past_len = past[0][0].shape[2]
        pos = torch.arange(h.shape[1], device=h.device) + past_len
        freqs = pos.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        key_pos = torch.arange(h.shape[1] + past_len, device=h.device)
        mask = key_pos[None, :] > pos[:, None]
        presents: KVCache = []
        for layer, p in zip(self.layers, past, strict=True):
            h, present = layer(h, cos, sin, mask, p)
            presents.append(present)
        return self.norm(h), presents


class MIDIModel(nn.Module):
    """`net` reads whole events (8 summed token embeddings); `net_token` + `lm_head` spell out the
    next event token by token, starting from `net`'s hidden state of the last event."""

    def __init__(self, net: LlamaSpec, net_token: LlamaSpec) -> None:
        super().__init__()
        if net.hidden_size != net_token.hidden_size or net.vocab_size != net_token.vocab_size:
            raise ValueError("net and net_token must share hidden_size and vocab_size")
        self.net = LlamaStack(net)
        self.net_token = LlamaStack(net_token)
        self.lm_head = nn.Linear(net.hidden_size, net.vocab_size, bias=False)

    def forward(self, x: Tensor, past: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """x (B, N, 8) int64 -> hidden (B, N, E) and the grown base cache."""
        if past is None:
            past = self.net.empty_cache(x.shape[0])
        return self.net(self.net.embed_tokens(x).sum(dim=-2), past)

    def forward_token(self, hidden: Tensor, x: Tensor,
                      past: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """hidden (B, 0 or 1, E), x (B, T) -> logits (B, states + T, V) and the grown token cache."""
        if past is None:
            past = self.net_token.empty_cache(x.shape[0])
        h = torch.cat((hidden, self.net_token.embed_tokens(x)), dim=1)
        out, presents = self.net_token(h, past)
        return self.lm_head(out), presents

    def loss(self, x: Tensor) -> Tensor:
        """SkyTNT's training objective: every event predicts the next event's 8 tokens, pads ignored."""
        hidden, _ = self.forward(x[:, :-1])
        y = x[:, 1:]
        b, n, t = y.shape
        logits, _ = self.forward_token(hidden.reshape(b * n, 1, -1), y.reshape(b * n, t)[:, :-1])
        return F.cross_entropy(logits.reshape(b * n * t, -1), y.reshape(-1), ignore_index=0)

    def init_random(self, seed: int, std: float = 0.02) -> None:
        """Deterministic weights; a std well above training's 0.02 gives peaked attention and logits,
        which makes cache/mask mistakes visible in equality tests."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(std * torch.randn(p.shape, generator=g))
            for stack in (self.net, self.net_token):
                stack.embed_tokens.weight[stack.spec.pad_token_id].zero_()

    def config_metadata(self) -> str:
        """The ONNX `config` metadata text: keys net / net_token, each a JSON string, as SkyTNT writes."""
        return json.dumps({"net": json.dumps(self.net.spec.to_hf_dict(), indent=2, sort_keys=True),
                           "net_token": json.dumps(self.net_token.spec.to_hf_dict(), indent=2,
                                                   sort_keys=True)}, indent=4)
