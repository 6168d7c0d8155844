"""unspoken runtime: score any English criterion against a text from a frozen LLM's hidden state, torch-free."""

from .classifier import Classifier, Scores
from .errors import BindingError, BundleError, InputError, MissingExtraError, UnspokenError
from .manifest import Manifest, load_manifest
from .template import PromptTemplate, default_template

__all__ = [
    "Classifier",
    "Scores",
    "Manifest",
    "load_manifest",
    "PromptTemplate",
    "default_template",
    "UnspokenError",
    "InputError",
    "BundleError",
    "BindingError",
    "MissingExtraError",
]
