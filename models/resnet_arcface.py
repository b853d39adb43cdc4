"""ResNet-50 with an ArcFace head: the paper's face-identity judge for LFW.

ArcFace (Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face
Recognition", CVPR 2019) scores a class by the scaled cosine between the L2-normalised
embedding and the L2-normalised class centre; training adds an angular margin ``m`` to the
angle of the true class, so identities are separated by a margin on the hypersphere.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from models.safe_load import load_weights

ARCFACE_SCALE = 64.0
"""ArcFace's feature scale ``s`` (Deng et al. 2019)."""
ARCFACE_MARGIN = 0.5
"""ArcFace's additive angular margin ``m`` in radians (Deng et al. 2019)."""
EMBEDDING_DIM = 512
"""Embedding size of ArcFace's face models (fc -> BN)."""
MIN_SIDE = 64
"""Smaller inputs are upsampled so ResNet's /32 downsampling still leaves a 2x2 map."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRETRAINED_NAME = "IMAGENET1K_V1"


def imagenet_checkpoint() -> Path:
    """Where torchvision would cache ResNet50_Weights.IMAGENET1K_V1 (torch hub cache)."""
    import torchvision  # lazy: ~1 s, and every process imports models

    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    name = os.path.basename(urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


class ResNetArcFace(nn.Module):
    """torchvision ResNet-50 whose fc is a 512-d embedding (Linear + BN) with an ArcFace head.

    ``forward`` returns the scaled cosine logits without margin (argmax = predicted identity);
    :meth:`margin_logits` adds the margin to the true class for training. Input [B,C,H,W] in
    [0, 1]; gray is repeated to 3 channels and ImageNet normalisation is applied inside.
    ImageNet weights are loaded only from a local torch hub file (never downloaded); the
    source is recorded in ``pretrained`` ("IMAGENET1K_V1" or "none").
    """

    scale: float = ARCFACE_SCALE
    margin: float = ARCFACE_MARGIN

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (3, 112, 112),
        num_classes: int = 10,
        imagenet: bool = True,
    ) -> None:
        super().__init__()
        c = input_shape[0]
        if c not in (1, 3):
            raise ValueError(f"ResNetArcFace takes 1 (gray) or 3 channels, got input {input_shape}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels = c
        import torchvision  # lazy: ~1 s, and every process imports models

        backbone = torchvision.models.resnet50(weights=None)
        self.pretrained = "none"
        checkpoint = imagenet_checkpoint()
        if imagenet and checkpoint.is_file():
            backbone.load_state_dict(load_weights(checkpoint))
            self.pretrained = PRETRAINED_NAME
        backbone.fc = nn.Sequential(
            nn.Linear(backbone.fc.in_features, EMBEDDING_DIM), nn.BatchNorm1d(EMBEDDING_DIM)
        )
        self.backbone = backbone
        self.centres = nn.Parameter(torch.empty(num_classes, EMBEDDING_DIM))
        nn.init.xavier_uniform_(self.centres)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings [B, 512] of images [B,C,H,W] in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        short = min(x.shape[-2:])
        if short < MIN_SIDE:  # keep the aspect ratio
            size = [math.ceil(s * MIN_SIDE / short) for s in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return F.normalize(self.backbone(x), dim=-1)

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """cos(theta) between each embedding and each class centre: [B, classes]."""
        return self.embed(x) @ F.normalize(self.centres, dim=-1).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled cosine logits without margin: what the judge predicts with."""
        return self.scale * self.cosine(x)

    def margin_logits(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training logits: the true class scores s*cos(theta + m), the others s*cos(theta)."""
        return arcface_logits(self.cosine(x), labels, self.scale, self.margin)


def arcface_logits(
    cosine: torch.Tensor, labels: torch.Tensor, scale: float, margin: float
) -> torch.Tensor:
    """ArcFace logits from cosines [B, classes]: cos(theta + m) for the true class.

    Where theta + m would pass pi (cos(theta + m) no longer decreasing in theta), the
    reference implementation (insightface) uses cos(theta) - m*sin(m) instead.
    """
    cos = cosine.clamp(-1.0, 1.0)
    sin = (1.0 - cos * cos).clamp_min(1e-12).sqrt()
    with_margin = cos * math.cos(margin) - sin * math.sin(margin)
    with_margin = torch.where(
        cos > math.cos(math.pi - margin), with_margin, cos - math.sin(math.pi - margin) * margin
    )
    true_class = F.one_hot(labels, cos.shape[-1]).bool()
    return scale * torch.where(true_class, with_margin, cos)
