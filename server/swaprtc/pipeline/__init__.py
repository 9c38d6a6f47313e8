"""The neural face-swap pipeline: one small module per stage."""
