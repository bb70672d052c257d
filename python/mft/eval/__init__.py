"""Evaluation: perplexity (`ppl`), multiple-choice log-likelihood (`mc`) and
precision comparison (`compare`). See docs/eval.md."""
