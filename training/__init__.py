"""Training-data generation and emulator training for iaemu (installed as ``iaemu_likelihood.training``).

Needs the ``train`` extra (halotools, numba, CAMB, PySCo, kdcount, h5py); nothing heavy is
imported until a function that needs it runs. See ``README.md`` in this folder.
"""
