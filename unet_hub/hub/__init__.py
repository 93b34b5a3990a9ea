"""The Hugging Face Hub: model cards and publishing model folders."""
