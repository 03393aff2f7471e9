"""A byte-level decoder-only transformer (GPT-2 shape: pre-LN, learned positions, tied embeddings).

The forward signature is the Optimum / transformers.js decoder layout, so the ONNX export takes
  input_ids, attention_mask, position_ids, past_key_values.{i}.key / .value
and returns
  logits, present.{i}.key / .value
with key/value tensors shaped [batch, heads, sequence, head_dim].
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 257  # 256 bytes + <|endoftext|>
EOT = 256


@dataclass
class Config:
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    n_ctx: int = 256
    vocab: int = VOCAB

    def to_dict(self):
        return asdict(self)


ARCHS = {
    "verifier": Config(n_layer=6, d_model=256, n_head=4, d_ff=1024),
    "drafter": Config(n_layer=1, d_model=64, n_head=2, d_ff=256),
}


class Block(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.n_head = c.n_head
        self.ln1 = nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.fc = nn.Linear(c.d_model, c.d_ff)
        self.out = nn.Linear(c.d_ff, c.d_model)

    def forward(self, x, key_mask, past_k, past_v):
        B, T, D = x.shape
        H = self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q = q.view(B, T, H, D // H).transpose(1, 2)
        k = k.view(B, T, H, D // H).transpose(1, 2)
        v = v.view(B, T, H, D // H).transpose(1, 2)
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // H))
        att = att.masked_fill(~key_mask, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(y)
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, k, v


class GPT(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.config = c
        self.tok = nn.Embedding(c.vocab, c.d_model)
        self.pos = nn.Embedding(c.n_ctx, c.d_model)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.d_model)
        self.apply(self._init)
        for b in self.blocks:  # GPT-2's scaled init of residual projections
            nn.init.normal_(b.proj.weight, std=0.02 / math.sqrt(2 * c.n_layer))
            nn.init.normal_(b.out.weight, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, input_ids, attention_mask=None, position_ids=None, past=None):
        """past: list of (k, v) per layer or None. Returns (logits, [(k, v), ...])."""
        B, T = input_ids.shape
        past_len = 0 if past is None else past[0][0].shape[2]
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + T).unsqueeze(0).expand(B, T)
        if attention_mask is None:
            attention_mask = torch.ones(B, past_len + T, dtype=torch.long)
        q_pos = torch.arange(T).unsqueeze(1) + past_len
        k_pos = torch.arange(past_len + T).unsqueeze(0)
        causal = (k_pos <= q_pos).unsqueeze(0).unsqueeze(0)  # [1, 1, T, S]
        key_mask = causal & attention_mask.bool().unsqueeze(1).unsqueeze(2)  # [B, 1, T, S]
        x = self.tok(input_ids) + self.pos(position_ids)
        presents = []
        for i, b in enumerate(self.blocks):
            pk, pv = (None, None) if past is None else past[i]
            x, k, v = b(x, key_mask, pk, pv)
            presents.append((k, v))
        logits = self.ln_f(x) @ self.tok.weight.t()
        return logits, presents


class OnnxWrapper(nn.Module):
    """Flat-argument forward for torch.onnx.export in the Optimum decoder layout."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *flat_past):
        past = [(flat_past[2 * i], flat_past[2 * i + 1]) for i in range(len(flat_past) // 2)]
        logits, presents = self.model(input_ids, attention_mask, position_ids, past)
        out = [logits]
        for k, v in presents:
            out += [k, v]
        return tuple(out)


def param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
