"""A two-network method with its own hyperparameter, in one file: each network learns the entries whose loss
is among the `keep_share` smallest of their class column in its peer (a small-loss cross update, as
Co-teaching, with the kept share searched directly). It says what it deems unreliable: the entries both
networks find among the largest losses of their column."""

from dataclasses import dataclass

import torch

from mhss_ray.config import num
from mhss_ray.methods.base import Method, MethodInputs, Selection
from mhss_ray.registry import register_method


@dataclass
class AgreementParams:
    keep_share: float = num(0.8, 0.5, 1.0)  # the share of each class column a network passes to its peer


class ToyAgreement(Method):
    num_networks = 2

    def __init__(self, inputs: MethodInputs):
        super().__init__(inputs.observed, inputs.clean, inputs.loss_fn)
        self.keep_share = inputs.cfg.method.keep_share

    def _kept(self, loss: torch.Tensor) -> torch.Tensor:
        return loss <= torch.quantile(loss.float(), self.keep_share, dim=0, keepdim=True)

    def select(self, indices, logits):
        labels = self.observed[indices]
        kept = [self._kept(self.loss_fn(z.detach(), labels)) for z in logits]
        return [Selection(labels, kept[1]), Selection(labels, kept[0])]  # cross update

    def suspected(self, losses, observed):
        return ~self._kept(losses[0]) & ~self._kept(losses[1])


register_method("toy-agreement", num_networks=2, params=AgreementParams, labels={"method.keep_share": "kept share"}, summary="test only")(
    ToyAgreement
)
