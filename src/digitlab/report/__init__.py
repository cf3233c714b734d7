"""Report: the figures (`figures`, `calibration_figures`, drawn with the `figurekit`), and the
self-contained report.html (`sections` say what each part shows; `html` has the building
blocks; `evaluation` the test-set section).

Layer: imports `errors`, `files`, `config`, `data`, `runs` and `models`; matplotlib only
inside functions.
"""
