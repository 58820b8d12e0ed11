"""Distillation: losses (pure functions), the training task and the trainer."""
