"""Runs: run directories (`directories`), the artifacts beside a model and how a model is found
(`artifacts`: config, metadata, the shipped model), and the data a run trains on (`rundata`).

Layer: imports `errors`, `files`, `config` and `data`; nothing above (no TensorFlow).
"""
