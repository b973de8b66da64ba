"""augreg-objectives: objectives beyond cross-entropy, and ways of combining several losses.

Objectives: ``objectives.distillation`` (Hinton et al. 2015), ``objectives.supervised_contrastive``
(Gunel et al. 2021), ``objectives.simcse`` (Gao et al. 2021), ``objectives.mlm`` (auxiliary
masked-LM). Combiners (``train.combiner``): ``objectives.uncertainty`` (Kendall et al. 2018),
``objectives.pcgrad`` (Yu et al. 2020); the weighted sum is the core's ``core.sum``.

Importing this package does not import torch; the components import it when they act.
"""

__version__ = "0.1.0"
