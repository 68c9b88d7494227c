"""The model registry: the model store (local folder or gs://), the champion pointer, and the publish stage."""
