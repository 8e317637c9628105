"""Inference latency per sample on this CPU: the student in PyTorch against its ONNX export in
onnxruntime, the same inputs, the head's maps (decoding is the same code for both and not timed).

For each config a student with random weights is exported (`student.deploy.export_onnx`), then both
runtimes run `--repeats` times, interleaved (PyTorch, onnxruntime, PyTorch, ...) so that both see the
same machine load; reported are the medians and their ratio, which is what to read on a shared machine.

    OMP_NUM_THREADS=2 PYTHONPATH=. python -m bench.student_deploy --configs tiny bevdepth --threads 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"tiny": "configs/tiny.yaml", "lab": "configs/lab.yaml", "r50": "configs/r50_256x704.yaml",
           "bevdepth": "configs/bevdepth_r50_256x704_2key_cbgs_da_ema.yaml"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["tiny", "bevdepth"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads and onnxruntime intra-op threads")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from detection.weights import save_atomic
    from student.deploy import _ExportedStudent, example_inputs, export_onnx
    from student.deploy import load_student
    from student.models.student import build_student
    from student.train_config import load_train_config

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="x3kd-bench-deploy-") as tmp:
        for name in args.configs:
            cfg = load_train_config(REPO / CONFIGS[name], ["model.backbone.weights=null"])
            torch.manual_seed(0)
            ckpt, onnx_file = Path(tmp) / f"{name}.pt", Path(tmp) / f"{name}.onnx"
            save_atomic({"model": build_student(cfg.student).state_dict(), "ema": None, "step": 0,
                         "config": cfg.to_dict(), "provenance": None}, ckpt)
            t = time.perf_counter()
            result = export_onnx(ckpt, onnx_file, check=False)
            export_s = time.perf_counter() - t
            model = _ExportedStudent(load_student(ckpt)[0]).eval()
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
            inputs = example_inputs(cfg.student)
            feeds = {k: v.numpy() for k, v in inputs.items()}
            times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            with torch.no_grad():
                model(*inputs.values())  # warm-up of both
                session.run(None, feeds)
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    model(*inputs.values())
                    times["torch"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    session.run(None, feeds)
                    times["onnxruntime"].append(time.perf_counter() - t)
            pt, rt = (statistics.median(times[k]) for k in ("torch", "onnxruntime"))
            s = cfg.student
            rows.append((name, f"{s.num_cameras}x{s.image_size[1]}x{s.image_size[0]}, {s.key_frames} key frame(s)",
                         result["opset"], onnx_file.stat().st_size / 2**20, export_s, pt, rt))
            print(f"{name}: torch {pt:.3f} s, onnxruntime {rt:.3f} s", flush=True)
    print(f"\nCPU, {args.threads} threads each (torch; onnxruntime intra-op), {os.cpu_count()} cores, "
          f"median of {args.repeats} interleaved runs per runtime, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| config | input | opset | ONNX MB | export s | PyTorch s/sample | onnxruntime s/sample | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, shape, opset, mb, export_s, pt, rt in rows:
        print(f"| {name} | {shape} | {opset} | {mb:.1f} | {export_s:.0f} | {pt:.3f} | {rt:.3f} | {rt / pt:.2f} |")


if __name__ == "__main__":
    main()
