"""iDLG: "iDLG: Improved Deep Leakage from Gradients" (Zhao, Mopuri, Bilen; 2020).

DLG, but the label is read off the last layer's gradient instead of being optimised (exact
for one image; for a batch, by ``label_method``, see ``attacks.labels``; the paper's own sign
rule is ``label_method="idlg"``).
"""
from __future__ import annotations

from .base import check_hyperparameters, register
from .dlg import DLG
from .labels import AUTO


@register
class IDLG(DLG):
    name = "idlg"
    summary = "Zhao et al. 2020: DLG with the label inferred from the last layer's gradient"
    infers_labels = True

    def __init__(self, *, iterations: int = 100, lr: float = 1.0, restarts: int = 1,
                 cost: str = "l2", top_k: int | None = None, compile: str = "auto",
                 label_method: str = AUTO) -> None:
        check_hyperparameters(self.name, {"label_method": label_method})
        super().__init__(iterations=iterations, lr=lr, restarts=restarts, cost=cost, top_k=top_k,
                         compile=compile)
        self.label_method = label_method
