"""Quantization-aware training (paper Sec. 3): Neuron Convergence and Weight Clustering.

This subpackage is the only part of xbarsim that imports PyTorch (the ``train`` extra). The core
package never imports it; ``xbarsim train`` imports it lazily.

* :mod:`.quant`   - the Eq. 3 regularizer, straight-through rounding, Weight Clustering (Eq. 6),
                    plain rounding (the w/o baseline); clustering and rounding are plain numpy.
* :mod:`.model`   - a PyTorch model built from a :class:`~xbarsim.config.layers.NetworkSpec`, with the
                    signal modes ``float`` / ``scale`` (w/o) / ``count`` (Neuron Convergence) and
                    optionally quantized weights; exact integer export and evaluation.
* :mod:`.loop`    - seeded, reproducible training loops and the ``plain`` / ``nc`` / ``nc+wc`` recipes.
* :mod:`.options` - ``xbarsim train``'s options checked (before PyTorch is imported) and turned
                    into a spec and a ``TrainConfig``; the ``--log`` file.

See docs/training.md.
"""
