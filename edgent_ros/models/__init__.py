"""Plain-torch classifier backbones trained for the project (import torch only)."""
