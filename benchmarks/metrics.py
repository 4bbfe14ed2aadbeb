"""What the benchmarks measure besides time, and how their tables write it: how close a system's
outputs are to the float reference (top-1 agreement and KL divergence for classifiers, cosine of
the mean-pooled sentence embedding for MiniLM), and the cells shared by their reports."""

from __future__ import annotations

import numpy as np

CONFIDENT = 0.5  # fp32 top-1 probability above which a sample counts as confidently classified


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def mean_pooled(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sentence embedding as sentence-transformers computes it: the mean over real tokens."""
    mask = attention_mask[..., None].astype(np.float64)
    return (hidden * mask).sum(axis=1) / mask.sum(axis=1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def classifier_fidelity(reference: np.ndarray, logits: np.ndarray) -> dict:
    """Top-1 agreement (%), overall and where fp32 is confident, and mean KL(fp32 || int8)."""
    log_p, log_q = log_softmax(reference), log_softmax(logits)
    same = reference.argmax(axis=1) == logits.argmax(axis=1)
    confident = np.exp(log_p.max(axis=1)) >= CONFIDENT
    return {
        "top1_agreement": 100 * float(same.mean()),
        "confident_top1_agreement": 100 * float(same[confident].mean()) if confident.any() else None,
        "confident_crops": int(confident.sum()),
        "mean_kl": float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean()),
    }


def describe_classifier(metrics: dict) -> str:
    confident = metrics["confident_top1_agreement"]
    return (
        f"top-1 agree {metrics['top1_agreement']:.1f}% (confident {fmt(confident, '.1f')}% of "
        f"{metrics['confident_crops']}), KL {metrics['mean_kl']:.4f}"
    )


def embedding_fidelity(reference: np.ndarray, embeddings: np.ndarray) -> dict:
    """Cosine of each sentence embedding to fp32's: mean, minimum, 5th percentile."""
    cosines = np.array([cosine(a, b) for a, b in zip(reference, embeddings)])
    return {
        "mean_cosine": float(cosines.mean()),
        "min_cosine": float(cosines.min()),
        "p5_cosine": float(np.percentile(cosines, 5)),
    }


def describe_embedding(metrics: dict) -> str:
    return f"cosine mean {metrics['mean_cosine']:.4f}, min {metrics['min_cosine']:.4f}, p5 {metrics['p5_cosine']:.4f}"


def describe_qconfig(config) -> str:
    """A tvmq QConfig in a table cell: method, weights, activations, and what differs from the defaults."""
    method = f"percentile {config.percentile:g}" if config.method == "percentile" else config.method
    weights = ("per-channel" if config.per_channel else "per-tensor") + (" 7-bit" if config.reduce_range else "")
    activations = f"{config.activation_dtype} {'sym' if config.symmetric_activations else 'asym'}"
    parts = [method, f"{weights} weights", f"{activations} activations"]
    if config.skip:
        parts.append(f"float: {', '.join(config.skip)}")
    if not config.bias_correction:
        parts.append("no bias correction")
    return ", ".join(parts)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")
