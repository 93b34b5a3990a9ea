"""Hugging Face Spaces: a static Space that segments in the visitor's browser, a Gradio
Space that runs on ZeroGPU or CPU, and ``unet-hub space build|push`` to make either."""
