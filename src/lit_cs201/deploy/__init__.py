"""Your model elsewhere: export to one ONNX (or ``.pt2``) file, and the runtime that needs no torch.

    best.ckpt ──export──▶ model.onnx (uint8 (N, C, H, W) in; cast, /255, inversion rule, mean/std, net inside)
    image files ──the one decoder (lit_cs201.data.decode)──▶ uint8 ──onnxruntime──▶ Prediction

`lit_cs201.deploy.runtime` and `lit_cs201.deploy.results` import neither torch nor Lightning; `export` needs both.
"""
