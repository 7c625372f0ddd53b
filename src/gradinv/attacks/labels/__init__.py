"""Label inference from the classifier layer's update, one paper per file, all reachable
through a small registry (``--label-method``)."""
from . import count, idlg, ilrg, llg, rlu, yin  # noqa: F401  (importing registers them)
from .base import (AUTO, InferredLabels, LabelMethod, LabelProblem, available,
                   estimate_num_images, infer_labels, method_choices, register)

__all__ = ["AUTO", "InferredLabels", "LabelMethod", "LabelProblem", "available",
           "estimate_num_images", "infer_labels", "method_choices", "register"]
