"""Benchmarks of the project: speed, cost and accuracy measured on this machine, never asserted in tests.

Each module is a command-line entry point run from the repository root, ``python -m benchmarks.NAME``
(``cutout``, ``default_model``, ``default_sweep``, ``gpu_train_check``, ``mapping``, ``pipeline``,
``train_smoke``, ``audio``), and follows the project's CLI contract (``xmcommon.cli``): ``get_args_parser()``,
``main(args) -> dict`` (the measured rows and their Markdown table), ``render(result, args)`` and ``cli()``.
Timing, tables and the other shared helpers are in :mod:`benchmarks.common`.
"""
