"""Evaluation: perplexity (`ppl`), multiple-choice log-likelihood (`mc`) and
precision comparison (`compare`). See docs/feature/evaluation.md."""
