"""Peak RSS of w8a8 calibration vs the number of calibration samples (streamed from DATA.npz).

Model: a MobileNetV2 (width 1.0, 3.5 M parameters, the torchvision layout built from
``edgequant_zoo.convnets.InvertedResidual``) at 3×112×112 input, random weights (memory does
not depend on them). Data: crops of the offline calibration photos
(``edgequant_zoo.photos.crops``) written to a stored DATA.npz in pieces, so the bench itself
never holds the set. Each run is its own subprocess; peak RSS is its
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after ``quantize(..., check_speed=True)``
(the CLI's default, so the speed check's sample is included).

Modes side by side: ``file`` = ``quantize(model, "w8a8", "cal.npz")`` (streamed, one batch
in memory); ``dict`` = the arrays loaded into memory first and passed as a dict (what every
run did before streaming: the whole set held, plus a second copy for the speed check).

Run: ``.venv/bin/python bench/calibration_memory.py [--samples 100 1000 10000]``

Measured (2 shared cores; 3×112×112 float32 = 147 KiB per sample; one run):

     samples   data MiB   file: peak RSS MiB   dict: peak RSS MiB   file / file@100
         100       14.4               1101.1               1094.8              1.00
       1,000      143.6               1126.9               1239.2              1.02
      10,000     1435.5               1078.2            (not run)              0.98

Streamed calibration is flat: 100× the data, the same peak (±3 %, run-to-run noise). The
≈1.1 GiB floor is one calibration batch (32 samples) of onnxruntime's intermediate tensors —
every one of the model's ≈150 activations is a graph output during calibration — plus the
observers and the speed check's two sessions; it scales with ``batch_size``, not with the
set. Held in memory (``dict``), the set adds itself plus copies (+145 MiB at 1,000 samples,
≈ +1.5 GiB projected at 10,000).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

SIZE = 112
#: MobileNetV2 inverted-residual settings: (expand t, channels c, repeats n, stride s).
MNV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
        (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2():
    """torchvision's MobileNetV2 layout (3.5 M parameters) from the zoo's block."""
    import torch
    from torch import nn

    from edgequant_zoo.convnets import InvertedResidual

    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
    c = 32
    for t, c_out, n, s in MNV2:
        for i in range(n):
            if t == 1:  # no expansion: depthwise + project
                layers.append(nn.Sequential(
                    nn.Conv2d(c, c, 3, s if i == 0 else 1, 1, groups=c, bias=False),
                    nn.BatchNorm2d(c), nn.ReLU6(), nn.Conv2d(c, c_out, 1, bias=False),
                    nn.BatchNorm2d(c_out)))
            else:
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
            c = c_out
    layers += [nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    return nn.Sequential(*layers).eval()


def write_model(path: Path) -> int:
    import torch

    m = mobilenet_v2()
    torch.onnx.export(m, torch.zeros(1, 3, SIZE, SIZE), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}}, dynamo=False)
    return sum(p.numel() for p in m.parameters())


def write_npz(path: Path, n: int, piece: int = 500) -> None:
    """(n, 3, SIZE, SIZE) float32 crops as a stored npz, written ``piece`` samples at a time."""
    from edgequant_zoo.photos import CALIBRATION_PHOTOS, crops

    shape = (n, 3, SIZE, SIZE)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z, \
            z.open("input.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        for start in range(0, n, piece):
            f.write(crops(CALIBRATION_PHOTOS, min(piece, n - start), SIZE, seed=start).tobytes())


def child(model: str, data: str, mode: str) -> None:
    """One measured run: print {"peak_mib", "seconds"} as JSON."""
    import edgequant as eq

    t0 = time.perf_counter()
    cal = dict(np.load(data)) if mode == "dict" else data
    qm = eq.quantize(model, "w8a8", cal, check_speed=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB
    print(json.dumps({"peak_mib": round(peak, 1), "seconds": round(time.perf_counter() - t0, 1),
                      "warnings": qm.report["warnings"]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--dict-max", type=int, default=1000, help="largest set also run as a dict")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "mnv2.onnx"
        params = write_model(model)
        print(f"MobileNetV2 {params / 1e6:.2f} M parameters, input 3x{SIZE}x{SIZE}")
        print(f"{'samples':>8} {'data MiB':>9} {'file: peak MiB':>15} {'dict: peak MiB':>15} "
              f"{'file/first':>10}")
        first = None
        for n in args.samples:
            data = Path(tmp) / f"cal{n}.npz"
            write_npz(data, n)
            row = {}
            for mode in ("file", "dict"):
                if mode == "dict" and n > args.dict_max:
                    continue
                res = subprocess.run([sys.executable, __file__, "--child", str(model), str(data),
                                      mode], capture_output=True, text=True, check=True)
                row[mode] = json.loads(res.stdout.strip().splitlines()[-1])
            first = first or row["file"]["peak_mib"]
            mib = data.stat().st_size / 2**20
            d = row.get("dict", {}).get("peak_mib", "-")
            print(f"{n:>8,} {mib:>9.1f} {row['file']['peak_mib']:>15.1f} {d!s:>15} "
                  f"{row['file']['peak_mib'] / first:>10.2f}", flush=True)
            data.unlink()


if __name__ == "__main__":
    main()
