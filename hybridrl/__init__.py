"""hybridrl: hybrid PPO post-training (RLHF + RLVR) for vision-language models."""

__version__ = "0.1.0"
