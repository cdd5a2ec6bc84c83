"""Study kinds, one file each, and their registry ``KINDS`` (name -> ``Kind``).

What each kind shows and how it is special lives in its own file (``base.Kind`` says what a
kind may answer); the study reader, the runner and the report ask ``KINDS[spec.kind]``:

==========================  ====================================================================
compare                     the file's variants side by side (the overfitting clinic)
grid                        one config key over values
learning_curve              models trained on growing training sets
capacity                    model size against error, x = parameters (double descent)
kfold                       K-fold cross-validation
init                        activation and gradient scale per layer at initialization
dropout_activations         histograms and sparsity of the hidden activations
weights                     histograms, sparsity and norms of the weights
transfer                    layers copied from a source task, frozen or fine-tuned
multitask                   auxiliary heads on a shared trunk
==========================  ====================================================================
"""

from regulab.studies.kinds.base import Job, Kind
from regulab.studies.kinds.capacity import Capacity
from regulab.studies.kinds.compare import Compare
from regulab.studies.kinds.dropout_activations import DropoutActivations
from regulab.studies.kinds.grid import Grid
from regulab.studies.kinds.init import Init
from regulab.studies.kinds.kfold import KFold
from regulab.studies.kinds.learning_curve import LearningCurve
from regulab.studies.kinds.multitask import Multitask
from regulab.studies.kinds.transfer import Transfer
from regulab.studies.kinds.weights import Weights

__all__ = ["KINDS", "Kind", "Job"]

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Compare(), Grid(), LearningCurve(), Capacity(), KFold(), Init(), DropoutActivations(),
    Weights(), Transfer(), Multitask())}
