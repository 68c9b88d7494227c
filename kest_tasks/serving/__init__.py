"""Serving: the export stage (a SavedModel with two signatures) and its infra validation in a fresh process."""
