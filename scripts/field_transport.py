"""Pack a painter training box small enough to carry to a remote GPU machine, and unpack it there.

Used to train ``iaemu-painter-v3`` on a GPU machine reachable only through a 64 MiB transfer: a
box's ``density_n256.npz`` (53 MB) and ``galaxies_train.npz`` (12 MB) do not fit beside the
repository. The packed file holds

* the density as ``q = round(log1p(rho) / step)`` (uint16, split into high and low bytes, which
  compress better apart); unpacking gives ``expm1(q step)``, a relative error of at most
  ``step / 2`` (0.1% for the default ``step = 2e-3``) -- far below the CIC noise of the cells;
* each galaxy as the index of its voxel on the ``n_mesh`` galaxy mesh; unpacking puts it at the
  voxel centre, so the training targets (galaxies per voxel, :func:`training.field_mesh.count_mesh`)
  are exactly those of the original positions;
* the HOD points, seeds and both provenance records, verbatim.

Usage::

    python scripts/field_transport.py pack work_data/field/box_1001 .xfer/box_1001.npz
    python scripts/field_transport.py unpack .xfer/box_1001.npz /tmp/field/box_1001

The unpacked folder is for training only: its ``galaxies_train.npz`` differs from the original
file (voxel-centre positions), so a painter trained from it records that file's sha256; replace it
by the original's when the painter folder is brought back (the counts, hence the training, are
identical).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np


def pack(box_dir: Path, out: Path, density_mesh: int = 256, galaxy_mesh: int = 128, tag: str = "train",
         step: float = 2e-3) -> None:
    """Write the packed npz of one box folder (see the module docstring)."""
    with np.load(box_dir / f"density_n{density_mesh}.npz", allow_pickle=False) as f:
        rho, density_prov = f["density"], str(f["provenance"])
    if not np.all(np.isfinite(rho)) or rho.min() < 0:
        raise SystemExit(f"{box_dir}/density_n{density_mesh}.npz: density must be finite and >= 0")
    q = np.round(np.log1p(rho.astype(np.float64)) / step)
    if q.max() >= 2 ** 16:
        raise SystemExit(f"step = {step}: log1p(rho) up to {np.log1p(rho.max()):.2f} needs a larger step")
    q = q.astype(np.uint16)
    with np.load(box_dir / f"galaxies_{tag}.npz", allow_pickle=False) as f:
        gal = {k: f[k] for k in f.files}
    box_size = float(json.loads(str(gal["provenance"]))["box_size"])
    ijk = np.floor(np.mod(gal["positions"], box_size) * (galaxy_mesh / box_size)).astype(np.int64)
    ijk = ijk.clip(0, galaxy_mesh - 1)
    flat = np.ravel_multi_index(tuple(ijk.T), (galaxy_mesh,) * 3).astype(np.uint32)
    arrays = {"density_hi": (q >> 8).astype(np.uint8), "density_lo": (q & 255).astype(np.uint8),
              "density_step": np.float64(step), "density_provenance": np.array(density_prov),
              "voxel": flat, "galaxy_mesh": np.int64(galaxy_mesh),
              **{f"galaxies_{k}": v for k, v in gal.items() if k != "positions"}}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(out)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")


def unpack(packed: Path, box_dir: Path, tag: str = "train") -> None:
    """Rebuild ``density_n{n}.npz`` and ``galaxies_{tag}.npz`` in ``box_dir`` from a packed file."""
    with np.load(packed, allow_pickle=False) as f:
        q = (f["density_hi"].astype(np.uint16) << 8) | f["density_lo"]
        rho = np.expm1(q * float(f["density_step"])).astype(np.float32)
        density_prov = str(f["density_provenance"])
        n = int(f["galaxy_mesh"])
        gal = {k[len("galaxies_"):]: f[k] for k in f.files if k.startswith("galaxies_")}
        flat = f["voxel"]
    box_size = float(json.loads(str(gal["provenance"]))["box_size"])
    ijk = np.stack(np.unravel_index(flat.astype(np.int64), (n,) * 3), axis=1)
    gal["positions"] = ((ijk + 0.5) * (box_size / n)).astype(np.float32)
    box_dir.mkdir(parents=True, exist_ok=True)
    np.savez(box_dir / f"density_n{rho.shape[0]}.npz", density=rho, provenance=np.array(density_prov))
    np.savez(box_dir / f"galaxies_{tag}.npz", **gal)
    print(f"{box_dir}: density {rho.shape}, {len(flat)} galaxies")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack")
    a.add_argument("box_dir", type=Path)
    a.add_argument("out", type=Path)
    a.add_argument("--step", type=float, default=2e-3)
    b = sub.add_parser("unpack")
    b.add_argument("packed", type=Path)
    b.add_argument("box_dir", type=Path)
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args.box_dir, args.out, step=args.step)
    else:
        unpack(args.packed, args.box_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
