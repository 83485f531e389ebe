"""CosmoSIS modules of iaemu (installed as package data; CosmoSIS loads the files by path).

``iaemu cosmosis-dir`` prints this folder, for ``IAEMU_COSMOSIS_DIR`` in pipeline ini files.
"""
