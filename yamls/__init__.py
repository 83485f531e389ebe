"""Example Cobaya input files, installed as package data ``iaemu_likelihood.yamls``.

``iaemu examples DIR`` copies them into a folder; see ``iaemu_likelihood.cli_examples``.
"""
