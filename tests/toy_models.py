"""Small models for fast tests (importable as `toy_models:<fn>` with tests/ on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


class SkipNet(nn.Module):
    """A chain with a long skip connection, so some cuts carry two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a))
        c = self.conv3(b) + a
        return self.fc(torch.flatten(self.pool(c), 1))


def skipnet() -> nn.Module:
    return SkipNet()


def not_a_module() -> int:
    return 3


class ShapeBranch(nn.Module):
    """Control flow on a traced shape: torch.fx rejects it, torch.export specialises it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        if x.shape[-1] % 2 == 1:
            x = nn.functional.pad(x, (0, 1, 0, 1))
        x = torch.relu(self.conv2(x)) + x
        return self.fc(x.mean(dim=(2, 3)))


def shape_branch() -> nn.Module:
    return ShapeBranch()


class Stacked(nn.Module):
    """A top-level module holding a stack of blocks, then an identity and a dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Module()
        self.body.embed = nn.Linear(8, 16)
        self.body.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.GELU()) for _ in range(6))
        self.drop = nn.Dropout(0.1)
        self.ident = nn.Identity()
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body.embed(x)
        for b in self.body.blocks:
            h = b(h) + h
        return self.head(self.ident(self.drop(h)))


def stacked() -> nn.Module:
    return Stacked()


class Tokens(nn.Module):
    """Token ids and a boolean mask in, so integer and boolean tensors cross cuts."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        h = torch.relu(self.mix(h)) * keep.unsqueeze(-1)
        return self.head((h + ids.unsqueeze(-1).float() * 0.01).mean(1))


def tokens() -> nn.Module:
    return Tokens()


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


class Stage(nn.Module):
    """A stage whose only child is its (short) run of blocks, as timm's ResNetStage."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class OneBigStage(nn.Module):
    """Most parameters inside one stage of three blocks: too short for a stack."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 32)
        self.stage = Stage(32, 3)
        self.head = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(self.stem(x)))


def one_big_stage() -> nn.Module:
    return OneBigStage()


# A user's own transformers models, built from tiny configs (offline, random weights), as
# `--model toy_models:hf_gpt2` would build them: caches and ModelOutputs left at their defaults.
def _tiny(config: str, model: str, **kw: object) -> nn.Module:
    import transformers

    torch.manual_seed(0)
    return getattr(transformers, model)(getattr(transformers, config)(vocab_size=100, **kw))


def hf_gpt2() -> nn.Module:
    return _tiny("GPT2Config", "GPT2Model", n_layer=2, n_embd=32, n_head=2, n_positions=64)


def hf_bert() -> nn.Module:
    return _tiny("BertConfig", "BertModel", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=64)


def hf_t5_encoder() -> nn.Module:
    return _tiny("T5Config", "T5EncoderModel", d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2)


def hf_llama() -> nn.Module:
    return _tiny("LlamaConfig", "LlamaModel", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)


class WithExtras(nn.Module):
    """Returns a dict holding a tensor, a nested tuple with None, and a non-tensor object."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        h = torch.relu(self.fc1(x))
        return {"logits": self.fc2(h), "extra": (h, None), "meta": object()}


def with_extras() -> nn.Module:
    return WithExtras()


def _clipped(sizes: list, limit: int) -> list:
    """Changes its list argument in place, as torchvision's swin3d window sizes do."""
    for i in range(len(sizes)):
        sizes[i] = min(sizes[i], limit)
    return sizes


torch.fx.wrap("_clipped")


class MutatesList(nn.Module):
    """torch.fx traces it, but its graph cannot run: fx makes the list argument immutable."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = _clipped([x.shape[-1], 6], 6)
        h = torch.relu(self.fc1(x))
        return self.fc2(h[..., : keep[0]].sum(-1, keepdim=True).expand(-1, 8))


def mutates_list() -> nn.Module:
    return MutatesList()
