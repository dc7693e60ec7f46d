"""The README's "Adding a task family" recipe, filled in: a two-class toy problem."""
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import MetricSpec, Task
from bench.engine import StepOutput, train_loader
from bench.metrics import register_metric

register_metric("toy_accuracy", True, "accuracy (%) on the toy test points")


@dataclasses.dataclass
class ToyData:
    train: torch.utils.data.DataLoader
    test: tuple[torch.Tensor, torch.Tensor]


def _points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return x, (x[:, 0] * x[:, 1] > 0).long()  # the class is the sign of x0 * x1


class ToyTask(Task):
    name, datasets, default_dataset, models = "toy", ("quadrants",), "quadrants", ("mlp",)
    recipes = {"quick": dict(epochs=3, lr=1e-2)}

    def metric_specs(self, dataset):
        return [MetricSpec("toy_accuracy")]

    def load_data(self, config):
        return ToyData(train_loader(torch.utils.data.TensorDataset(*_points(256, 0)), config), _points(128, 1))

    def build_model(self, config, data):
        return nn.Sequential(nn.Linear(2, 32), nn.Hardtanh(), nn.Linear(32, 32), nn.Hardtanh(), nn.Linear(32, 2))

    def train_step(self, model, batch, data):
        x, y = batch
        return StepOutput(F.cross_entropy(model(x), y), len(y))

    @torch.no_grad()
    def evaluate(self, model, data, device):
        x, y = data.test
        return {"toy_accuracy": 100.0 * (model(x.to(device)).argmax(1) == y.to(device)).float().mean().item()}
