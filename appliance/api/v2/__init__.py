"""The Open Inference Protocol (KServe v2), as Triton, KServe, MLServer and OpenVINO Model Server speak it.

:mod:`.dataplane` does the work for both wires: :mod:`.rest` (``/v2/...`` with Triton's binary tensor data
extension) and :mod:`.grpc_service` (``inference.GRPCInferenceService`` on the gRPC port); :mod:`.repository` and
:mod:`.statistics` are the model repository and statistics extensions; :mod:`.datatypes` maps the protocol's
datatypes to numpy and TensorFlow.
"""
