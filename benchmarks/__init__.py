"""Benchmarks of numpy_attention against PyTorch CPU; run ``python -m benchmarks --help``.

``timing`` holds the method (alternating blocks in one process), ``cases``
what is compared, ``run`` the command line, the table, the JSON and the plot.
"""
