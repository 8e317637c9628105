"""Scoring detection results with nuscenes-devkit's own DetectionEval (detection_cvpr_2019), and its
pictures. Writing GT boxes through `results.detections_to_results` scores mAP 1 on the classes present,
which is what proves the frame, size-order, yaw and velocity conversions (tests do so)."""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .samples import NuScenesSamples

EVAL_CONFIG = "detection_cvpr_2019"


@dataclass
class EvalMetrics:
    """DetectionEval's summary: mAP, NDS, per-class AP (mean over distance thresholds) and TP errors."""

    mean_ap: float
    nd_score: float
    label_aps: dict[str, float]
    tp_errors: dict[str, float]
    label_tp_errors: dict[str, dict[str, float]]
    raw: dict[str, Any]
    # What was scored: checkpoint, step, EMA or raw weights, what the student was distilled from.
    about: str = ""
    # the devkit's evaluation (DetectionEval, its metrics and details), kept for its pictures
    devkit: Any = field(default=None, repr=False, compare=False)

    def table(self) -> str:
        """A markdown table: one row per class (AP and TP errors), then mAP / NDS and the mean errors."""
        errs = list(self.tp_errors)
        lines = ["| class | AP | " + " | ".join(errs) + " |", "| --- | ---: | " + " | ".join("---:" for _ in errs) + " |"]
        for name, ap in self.label_aps.items():
            e = self.label_tp_errors.get(name, {})
            lines.append(f"| {name} | {ap:.4f} | " + " | ".join(_fmt(e.get(k)) for k in errs) + " |")
        lines.append("| **mean** | " + f"{self.mean_ap:.4f} | " + " | ".join(_fmt(self.tp_errors[k]) for k in errs) + " |")
        lines.append(f"\nmAP {self.mean_ap:.4f}  NDS {self.nd_score:.4f}")
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def score_results(results_path: str | Path, dataset: "NuScenesSamples", out_dir: str | Path,
                  only_tokens: Sequence[str] | None = None) -> EvalMetrics:
    """Score a results JSON on `dataset`'s split with DetectionEval; writes DetectionEval's
    metrics_summary.json and metrics_details.json into `out_dir`. `only_tokens` scores those samples of
    the split alone (`eval --limit`). The devkit's pictures come after, from the returned metrics
    (`render_devkit`)."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    nusc, split = dataset.nusc, dataset.split
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The devkit prints and draws progress bars even with verbose=False.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if only_tokens is None:
            de = DetectionEval(nusc, config=config_factory(EVAL_CONFIG), result_path=str(results_path),
                               eval_set=split, output_dir=str(out), verbose=False)
        else:
            de = _samples_eval_class()(nusc, config_factory(EVAL_CONFIG), str(results_path), split, str(out),
                                       only_tokens)
        metrics, details = de.evaluate()
    summary = metrics.serialize()
    (out / "metrics_summary.json").write_text(json.dumps(summary, indent=2))
    (out / "metrics_details.json").write_text(json.dumps(details.serialize(), indent=2))
    return EvalMetrics(float(summary["mean_ap"]), float(summary["nd_score"]),
                       {k: float(v) for k, v in summary["mean_dist_aps"].items()},
                       {k: float(v) for k, v in summary["tp_errors"].items()},
                       {k: {e: float(x) for e, x in v.items()} for k, v in summary["label_tp_errors"].items()}, summary,
                       devkit=(de, metrics, details))


def _samples_eval_class():
    from nuscenes.eval.common.loaders import (add_center_dist, filter_eval_boxes, load_gt_of_sample_tokens,
                                              load_prediction_of_sample_tokens)
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.eval.detection.evaluate import DetectionEval

    class SamplesEval(DetectionEval):
        """DetectionEval over some samples of a split, loaded and filtered by the devkit's own
        functions for sample-token subsets (what its custom splits use)."""

        def __init__(self, nusc, config, result_path: str, eval_set: str, output_dir: str,
                     tokens: Sequence[str]) -> None:
            self.nusc, self.result_path, self.eval_set, self.output_dir = nusc, result_path, eval_set, output_dir
            self.verbose, self.cfg = False, config
            self.plot_dir = str(Path(output_dir) / "plots")
            Path(self.plot_dir).mkdir(parents=True, exist_ok=True)
            tokens = list(tokens)
            self.pred_boxes, self.meta = load_prediction_of_sample_tokens(
                result_path, config.max_boxes_per_sample, DetectionBox, sample_tokens=tokens, verbose=False)
            self.gt_boxes = load_gt_of_sample_tokens(nusc, tokens, DetectionBox, verbose=False)
            self.pred_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, self.pred_boxes), config.class_range)
            self.gt_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, self.gt_boxes), config.class_range)
            self.sample_tokens = self.gt_boxes.sample_tokens

    return SamplesEval


def render_devkit(scored: EvalMetrics, tokens: Sequence[str], out_dir: str | Path) -> list[str]:
    """The devkit's pictures of a scoring run: its PR and TP-error curves (`plots/*.png`) and its BEV view
    of GT and predictions over the LiDAR points for each of `tokens` (`render/<i>_<token>_devkit.png`).
    A picture that cannot be drawn is one line in the returned list, never an exception: the scores are
    written by then and stand."""
    de, metrics, details = scored.devkit
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _render_devkit(de, de.nusc, metrics, details, tokens, Path(out_dir))
    except Exception as e:  # noqa: BLE001  (matplotlib and the devkit raise many kinds)
        return [f"pictures: the devkit's curves or BEV views could not be drawn ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:160] if str(e) else ''})"]
    return []


def _render_devkit(de, nusc, metrics, details, tokens: Sequence[str], out: Path) -> None:
    """The devkit's own renderers (what `DetectionEval.render` draws, as PNG instead of PDF)."""
    import matplotlib

    matplotlib.use("Agg")  # the devkit draws through pyplot; no display is needed or wanted
    from nuscenes.eval.detection.render import (class_pr_curve, class_tp_curve, dist_pr_curve, summary_plot,
                                                visualize_sample)

    cfg = de.cfg
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    summary_plot(details, metrics, min_precision=cfg.min_precision, min_recall=cfg.min_recall,
                 dist_th_tp=cfg.dist_th_tp, savepath=str(plots / "summary.png"))
    for name in cfg.class_names:
        class_pr_curve(details, metrics, name, cfg.min_precision, cfg.min_recall, savepath=str(plots / f"{name}_pr.png"))
        class_tp_curve(details, metrics, name, cfg.min_recall, cfg.dist_th_tp, savepath=str(plots / f"{name}_tp.png"))
    for dist_th in cfg.dist_ths:
        dist_pr_curve(details, metrics, dist_th, cfg.min_precision, cfg.min_recall,
                      savepath=str(plots / f"dist_pr_{dist_th}.png"))
    (out / "render").mkdir(parents=True, exist_ok=True)
    for i, token in enumerate(tokens):
        visualize_sample(nusc, token, de.gt_boxes, de.pred_boxes, eval_range=max(cfg.class_range.values()),
                         verbose=False, savepath=str(out / "render" / f"{i:03d}_{token}_devkit.png"))

