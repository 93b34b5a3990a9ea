"""Metrics and the evaluator that scores a model's predictions against masks."""
