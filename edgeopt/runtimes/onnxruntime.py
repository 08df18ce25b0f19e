"""ONNX Runtime on this machine: runs the float model (and the QDQ model) on batches of data."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edgeopt.errors import ModelLoadError, first_line
from edgeopt.ir import input_arrays


class OnnxRuntime:
    """An ONNX Runtime CPU session that accepts a batch larger than the model's own batch of 1."""

    def __init__(self, model: onnx.ModelProto | bytes, num_threads: int = 0) -> None:
        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        # No busy-waiting between ops: ORT's spinning threads fight for the cores with every other
        # process; on a shared 2-core machine (load ~4) they doubled the time of a QDQ EfficientNet-Lite0
        # run on 32 samples (0.93 s with spinning, 0.41 s without, as fast as one thread). Spinning
        # changes no result, only how threads wait.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"ONNX Runtime cannot load the model: {first_line(exc)}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._model_batch = [i.shape[0] if i.shape else None for i in self.session.get_inputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run on ``inputs`` (first dim = batch); batches the model cannot take at once run sample by sample."""
        n = inputs[0].shape[0]
        if all(b != 1 for b in self._model_batch) or n == 1:
            return self.session.run(None, dict(zip(self.input_names, inputs)))
        outs = [self.session.run(None, {k: v[i:i + 1] for k, v in zip(self.input_names, inputs)})
                for i in range(n)]
        return [np.concatenate([o[j] for o in outs]) for j in range(len(self.output_names))]

    def run_batch(self, x: np.ndarray) -> list[np.ndarray]:
        """``run`` on a batch of model inputs (one array, or a structured array of several: ``ir.input_arrays``)."""
        return self.run(input_arrays(x, self.input_names))

    def iter_run(self, x: np.ndarray):
        """Yield the outputs of each sample of a batch (``ir.input_arrays``), one sample at a time."""
        for i in range(x.shape[0]):
            yield self.session.run(None, dict(zip(self.input_names, input_arrays(x[i:i + 1], self.input_names))))
