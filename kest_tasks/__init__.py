"""kest: production training pipelines for Keras models run as TensorFlow Estimators, orchestrated by Airflow.

Layers, lowest first (a module imports only from its own layer or lower ones; checked by import-linter):
core → data → registry → training → evaluation | serving → reporting → orchestration → cli.
"""
