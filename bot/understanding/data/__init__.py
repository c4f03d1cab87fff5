"""The classifier's labelled training data (classification_train_*.jsonl), read by bot.understanding.training.

The held-out test split is not here: it belongs to the evals (evals/data/classification_test.jsonl).
"""
