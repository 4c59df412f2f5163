"""The end-to-end pipeline: plan, then one function per step over one shared context."""
