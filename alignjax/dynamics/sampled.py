"""Sampled, loss-driven game dynamics on policy parameters. Filled in by the nash-games issue."""
