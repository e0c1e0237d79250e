"""Edge side: reading ``.tflite`` flatbuffers without TensorFlow (ops, dtypes, quantization, metadata).

Imports nothing from TensorFlow; a test proves it.
"""
