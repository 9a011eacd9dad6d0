"""Procedural visual tasks with ground truth: prompt records for pretraining, RL and the RM.

``synth.generate(tasks, n, seed=, split=, difficulty=)`` returns `hybridrl.records.PromptRecord`s;
``hybridrl data synth`` writes them to parquet. See docs/synth.md.
"""

from synth.registry import TASKS, UnknownTaskError, generate, get_task, iter_generate

__all__ = ["TASKS", "UnknownTaskError", "generate", "get_task", "iter_generate"]
