"""Edge side: where a model runs (this machine, a Raspberry Pi over SSH, an Android phone over adb).

Imports nothing from TensorFlow; a test proves it.
"""
