"""iDLG: "iDLG: Improved Deep Leakage from Gradients" (Zhao, Mopuri, Bilen; 2020).

DLG, but the label is read off the sign of the last layer's gradient instead of being
optimised (exact for one image; for a batch, the counting rule of ``labels.infer_labels``).
"""
from __future__ import annotations

from .base import register
from .dlg import DLG


@register
class IDLG(DLG):
    name = "idlg"
    summary = "Zhao et al. 2020: DLG with the label inferred from the last layer's gradient"
    infers_labels = True
