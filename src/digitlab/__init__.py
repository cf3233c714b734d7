"""digitlab: train, inspect and use handwritten-digit recognizers.

Importing the package is cheap on purpose: TensorFlow is imported only by the
modules that need it (models, train, evaluate, predict), and only when called.
"""

__version__ = "0.1.0"
