"""alignjax: pure-functional JAX direct alignment and game-theoretic preference learning."""

__version__ = "0.1.0"
