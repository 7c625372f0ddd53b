"""A client model in plain torch.nn, as a Flower project would have it (not a gradinv
architecture): ``run_flower.py --own-model`` trains it, and the record is audited with
``gradinv audit RECORD --model-factory client_model:Net`` (this folder on PYTHONPATH)."""
from torch import nn


class Net(nn.Module):
    """Two convolutions with torch BatchNorm2d, for 16x16 grey images and 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
