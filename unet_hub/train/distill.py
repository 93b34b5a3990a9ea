"""Distillation (``--teacher``): a wide teacher's probabilities as soft targets for a
small, fast student, blended with the labels' loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_hub.errors import ConfigError
from unet_hub.model.unet import UNet


class Teacher:
    """A trained model whose probabilities the student learns to match."""

    def __init__(self, model: UNet, weight: float, name: str):
        if not 0.0 < weight <= 1.0:
            raise ConfigError(f"--distill-weight must lie in (0, 1], got {weight}")
        self.model, self.weight, self.name = model.eval(), weight, name

    @classmethod
    def load(cls, name: str, weight: float, student: UNet, device: torch.device) -> Teacher:
        """The ``--teacher`` model, checked to see and predict what the student does."""
        model = UNet.from_pretrained(name, map_location=str(device))
        for field in ("n_channels", "n_classes"):
            theirs, ours = model.config[field], student.config[field]
            if theirs != ours:
                raise ConfigError(
                    f"--teacher {name}: its {field} is {theirs}, the student's is {ours}; "
                    "a teacher must take the same input and predict the same classes"
                )
        for p in model.parameters():
            p.requires_grad_(False)
        return cls(model, weight, name)

    def blend(
        self, label_loss: torch.Tensor, logits: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """``(1 - w) * label_loss + w * soft_loss(student, teacher)`` on the batch ``x``."""
        with torch.no_grad():
            target = self.model(x).float()
        return (1 - self.weight) * label_loss + self.weight * soft_target_loss(logits, target)


def soft_target_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the teacher's probabilities: sigmoid for one class, softmax
    for several (its minimum is where the student's probabilities equal the teacher's)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher_logits))
    soft = torch.softmax(teacher_logits, dim=1)
    return -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
