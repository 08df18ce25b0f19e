"""Builders of test programs, ONNX models and checks shared by the tests."""
