"""The few utilities every package of the project shares (vision, audio, mappings, crossmodal).

It sits below the four packages and imports none of them, so it keeps their import graph one-way:
``cli`` is the command-line contract of every ``python -m`` entry point, ``files`` the atomic file
writes behind models, checkpoints, caches and reports.
"""
