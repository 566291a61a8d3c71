"""Models layer: one builder per architecture, each with a ``quantized`` switch for the float twin."""
