"""Export: checkpoints to ONNX artifacts (parity-checked), int8 behind a quality gate, ORT format.

The family interface (see ``export/README.md`` and docs/ARCHITECTURE.md):

* :mod:`speechkit.export.registry`: ``Exporter``, ``register_exporter``, ``exporter_for``,
  ``all_exporters`` (imports every module here, so a family's module registers itself).
* :mod:`speechkit.export.artifact`: ``export_artifact``: metadata checked against the family's
  ``ArtifactSpec``, export, parity, atomic write, ORT.
* :mod:`speechkit.export.gate`: ``QualityGate`` / ``GateReport`` / ``QualityGateError``.
* :mod:`speechkit.export.int8`: static QDQ quantization, calibration reader, gated int8 write.
* :mod:`speechkit.export.onnx_export`: the generic exporter, parity check, ORT conversion.
* Families: :mod:`speechkit.export.clip_classifier` (KWS, scenes; ``kws_export`` keeps the
  KWS names), :mod:`speechkit.export.asr_export`.

Imports torch; the torch-free side is :mod:`speechkit.runtime`.
"""

from speechkit.export.onnx_export import ParityError, check_parity, export_onnx

__all__ = ["ParityError", "check_parity", "export_onnx"]
