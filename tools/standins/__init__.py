"""Random-weight stand-ins for the neural models, with the real architectures and I/O contracts.

They exist to give `swaprtc bench` realistic compute where the real weights cannot be had; their
outputs are meaningless. Everything except `onnx_graph` needs PyTorch, which is not a project
dependency: import the model modules only after checking that torch is installed.
"""
