"""augreg-consistency: consistency training on unlabelled in-domain text.

Components (registered by :mod:`augreg_consistency.hooks`):

* ``consistency.uda`` (regularizer): Unsupervised Data Augmentation (Xie et al. 2020).
* ``consistency.self_training`` (regularizer): FixMatch-style pseudo-labelling (Sohn et al.
  2020) with FlexMatch thresholds (Zhang et al. 2021) or distribution alignment (Berthelot
  et al. 2020).
* ``consistency.tsa`` (objective): cross-entropy with training-signal annealing (Xie et al.
  2020), the labelled loss UDA is trained with.
"""

from __future__ import annotations

__version__ = "0.1.0"
