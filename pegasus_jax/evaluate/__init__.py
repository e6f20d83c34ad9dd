"""Evaluation: caption metrics, multiple-choice QA by likelihood, held-out loss, and the judge-based
QEFVC (Video-ChatGPT protocol) and VidFactScore benchmarks, with JSON + markdown reports."""
