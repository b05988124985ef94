"""The checker's passes, one module per family of rules; `cadence.dsl.checker` runs them all."""
