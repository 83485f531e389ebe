"""A tiny synthetic painter folder for tests (randomly initialised network; never shipped, never trained)."""
from __future__ import annotations

from pathlib import Path

from .weights import write_painter_folder

__all__ = ["write_synthetic_painter", "SYNTHETIC_BOUNDS"]

#: HOD box of the synthetic painter (log10 Msun/h masses).
SYNTHETIC_BOUNDS = {"logMmin": [11.6, 13.2], "sigma_logM": [0.05, 0.8], "logM0": [10.5, 14.0],
                    "logM1": [12.5, 14.8], "alpha": [0.5, 1.5]}


def write_synthetic_painter(folder, n_mesh: int = 16, box_size: float = 16.0, seed: int = 0,
                            support: dict | None = None, input_factor: int = 1, kind: str = "unet") -> Path:
    """Write a painter folder with a 2-level, 2/4-channel U-Net of network ``kind`` (``"unet"`` or
    ``"encoder_head"``, 3 features, head width 4) initialised from ``seed`` (needs torch, MONAI); its
    density mesh is ``input_factor * n_mesh`` per side."""
    import torch

    from .network import build_network

    config = {"n_params": 5, "channels": [2, 4], "strides": [2], "num_res_units": 1, "context": 2,
              "input_factor": input_factor}
    if kind != "unet":
        config.update(kind=kind, features=3, head_width=4)
    torch.manual_seed(seed)
    net = build_network(config)
    meta = {"version": "synthetic-painter", "architecture_config": config,
            "hod_names": list(SYNTHETIC_BOUNDS), "bounds": SYNTHETIC_BOUNDS, "support": support,
            "mesh": {"n_mesh": n_mesh, "box_size": box_size, "voxel_size": box_size / n_mesh,
                     "density_n_mesh": n_mesh * input_factor, "assignment": "synthetic"},
            "input": {"transform": "log1p", "shift": 0.6, "scale": 0.4}, "pos_weight": 10.0,
            "training": {"boxes": [], "note": "synthetic test painter: random weights, never trained"}}
    return write_painter_folder(folder, meta, net.state_dict())
