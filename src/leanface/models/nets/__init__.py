"""The networks (torch modules) of the families in leanface.models, imported only when a network is built
(registry.network): configs, decoders and presets need no torch."""
