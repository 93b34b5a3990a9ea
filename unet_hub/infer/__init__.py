"""Running a model on images: tiling, fast backends, ONNX export, pictures of the result."""
