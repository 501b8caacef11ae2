"""Test-wide JAX settings: strict rank promotion catches silent broadcasting bugs; the
persistent compilation cache (see alignjax.compile_cache) makes a second run compile less."""

import jax

from alignjax.compile_cache import enable

jax.config.update("jax_numpy_rank_promotion", "raise")
enable()
