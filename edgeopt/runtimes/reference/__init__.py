"""The integer reference executor: one small module per op family, each registering its kernels
(``registry.KERNELS``) and their Prepare functions (``prepare.PREPARERS``) when imported."""
from edgeopt.registry import import_submodules

import_submodules(__name__)
