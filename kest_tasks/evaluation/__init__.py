"""Evaluation: metrics, scoring a split with a model, the evaluate stage, and the gate that blesses a model."""
