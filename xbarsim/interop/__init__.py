"""Front ends beside the YAML: PyTorch import (:mod:`.torch_import`, needs the ``train`` extra)
and NIR export/import (:mod:`.nir_io`, needs the ``nir`` extra), sharing the quantizer of
:mod:`.quantize`. Stage: above cost/sweep/train (it reuses train's quantizers); only
:mod:`xbarsim.commands` and the package root import it, lazily, so that ``import xbarsim`` needs
neither torch nor nir.
"""
