"""trigflow: physics data → QKeras model → hls4ml firmware → bit-exact proof → report.

Spine layer: this package holds the run config, the pipeline and the CLI; the stage packages
(``trigflow.models``, ``trigflow.quantize``, ``trigflow.firmware``) are mapped in from the top-level folders.
"""

__version__ = "0.1.0"
