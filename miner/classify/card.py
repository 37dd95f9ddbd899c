"""Markdown tables of the cross-validated metrics, written beside the model for MODEL_CARD.md."""

from __future__ import annotations

from typing import Any


def _row(name: str, m: dict[str, Any]) -> str:
    return f"| {name} | {m['n']} | {m['tp'] + m['fn']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |"


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """Overall, per-source and per-symptom tables and both confusion matrices, from metrics.json."""
    cv = metrics.get("cv")
    if not cv:
        return "No cross-validation was run for this model.\n"
    lines = [
        f"Out-of-fold predictions of {metrics['folds']}-fold stratified cross-validation on "
        f"{metrics['n_posts']} hand-labelled posts, threshold {cv['threshold']:.2f} (chosen on the same "
        "out-of-fold scores, maximising F1).",
        "",
        "| slice | posts | outages | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|",
        _row("**overall**", cv["overall"]),
    ]
    groups = {k: v for k, v in cv["per_source"].items() if "/" not in k}
    lines += [_row(k, v) for k, v in sorted(groups.items())]
    lines += [
        "",
        "Finer sources:",
        "",
        "| source | posts | outages | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(k, v) for k, v in sorted(cv["per_source"].items()) if "/" in k]
    c = cv["confusion"]
    lines += [
        "",
        "Confusion matrix (outage decision):",
        "",
        "| | predicted outage | predicted not |",
        "|---|---:|---:|",
        f"| labelled outage | {c['tp']} | {c['fn']} |",
        f"| labelled not | {c['fp']} | {c['tn']} |",
        "",
        "Per symptom (true outages of that symptom): share detected as outage, share given the right symptom:",
        "",
        "| symptom | outages | outage recall | symptom accuracy |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {v['n']} | {v['outage_recall']:.3f} | {v['symptom_accuracy']:.3f} |"
        for k, v in cv["per_symptom"].items()
    ]
    labels = cv["symptom_confusion"]["labels"]
    lines += [
        "",
        "Symptom confusion (rows: labelled, columns: predicted by the symptom head, true outages only):",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    lines += [
        f"| {a} | " + " | ".join(str(x) for x in row) + " |"
        for a, row in zip(labels, cv["symptom_confusion"]["matrix"], strict=True)
        if any(row)
    ]
    agree = metrics.get("int8_agreement")
    if agree:
        lines += [
            "",
            f"int8 vs fp32 ONNX on {agree['n']} real posts: same decision on {agree['decision_agreement']:.4f}, "
            f"same symptom on {agree['symptom_agreement']:.4f} of fp32 positives, score difference mean "
            f"{agree['mean_abs_diff']:.4f}, max {agree['max_abs_diff']:.4f}.",
        ]
    ee = metrics.get("early_exit")
    if ee and ee["n"]:
        stops = zip(ee["layers"], ee["thresholds"], ee["stop_rates"], strict=True)
        per_exit = ", ".join(f"after layer {n}: threshold {t:.3f}, {r:.3f} stop" for n, t, r in stops)
        lines += [
            "",
            f"Early exits on {ee['n']} unseen real posts: {per_exit}; {ee['exit_rate']:.3f} of posts stop early, "
            f"{ee['layers_per_post']:.2f} encoder layers run per post, {ee['dropped']} of the full network's "
            f"{ee['full_positives']} outage calls dropped.",
        ]
    return "\n".join(lines) + "\n"
