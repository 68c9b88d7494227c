"""The bundled config (Iris) and its dataset, shipped as package data."""
