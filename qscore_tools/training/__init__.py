"""Model training and ONNX export (needs the `train` extra: scikit-learn, skl2onnx, onnx)."""
