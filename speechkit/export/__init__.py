"""Export: ONNX wrappers, metadata, parity checks, int8 quantization, ORT mobile format.

* :mod:`speechkit.export.onnx_export`: generic ``export_onnx``, ``check_parity``, ORT conversion.
* :mod:`speechkit.export.kws_export`: the KWS artifact (contract 6) and its int8 gate.

Imports torch; the torch-free side is :mod:`speechkit.runtime`.
"""

from speechkit.export.onnx_export import ParityError, check_parity, export_onnx

__all__ = ["ParityError", "check_parity", "export_onnx"]
