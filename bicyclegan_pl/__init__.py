"""Multimodal and CLIP-guided image-to-image translation on PyTorch Lightning + Hydra."""
